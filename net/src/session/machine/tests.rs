//! The session machine on its own: events in, outputs checked.

use super::*;
use crate::protocol::MonitorEntry;
use std::time::Duration;

const CONTROL: Rights = Rights {
    control: true,
    clipboard: false,
};
const ALL: Rights = Rights {
    control: true,
    clipboard: true,
};

fn outputs(s: &mut ViewerSession) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// The messages sent, decoded, with their channels.
fn sent(outputs: &[Output]) -> Vec<(Channel, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(ch, bytes) => Some((*ch, Message::decode(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

fn counted(outputs: &[Output]) -> Vec<Counter> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Count(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn open(rights: Rights, channels: &[Channel]) -> ViewerSession {
    let mut s = ViewerSession::new(1, 1024, rights);
    for ch in channels {
        s.channel_opened(*ch, &Replay::default());
    }
    outputs(&mut s);
    s
}

fn encode(msg: &Message) -> Vec<u8> {
    msg.encode().unwrap()
}

fn key(pressed: bool) -> Vec<u8> {
    encode(&Message::Key {
        pressed,
        code: "KeyA".into(),
    })
}

fn notice_codes(outputs: &[Output]) -> Vec<(Channel, u8, u32)> {
    sent(outputs)
        .into_iter()
        .filter_map(|(ch, m)| match m {
            Message::Notice { code, transfer, .. } => Some((ch, code, transfer)),
            _ => None,
        })
        .collect()
}

#[test]
fn notices_are_throttled_per_kind_except_those_naming_a_transfer() {
    let mut s = open(Rights::default(), &[Channel::Input, Channel::Clipboard]);
    let t0 = Instant::now();
    // Without control, each key is refused: one NOT_ALLOWED per interval, each counted.
    for i in 0..10 {
        s.message(
            Channel::Input,
            &key(true),
            t0 + Duration::from_millis(i * 100),
        );
    }
    let out = outputs(&mut s);
    assert_eq!(
        notice_codes(&out),
        [(Channel::Input, notice::NOT_ALLOWED, 0)]
    );
    assert_eq!(counted(&out), [Counter::InputRefused; 10]);
    // Another kind is not held back by it.
    for _ in 0..3 {
        s.message(Channel::Input, &[0xee], t0 + Duration::from_secs(1));
        s.message(
            Channel::Input,
            &encode(&Message::RequestControl),
            t0 + Duration::from_secs(1),
        );
    }
    let out = outputs(&mut s);
    assert_eq!(
        notice_codes(&out),
        [(Channel::Input, notice::RATE_LIMITED, 0)],
        "a malformed message gets no notice; one of two control requests is rate limited"
    );
    // The interval over, the first kind is told again, once.
    let later = t0 + NOTICE_INTERVAL;
    s.message(Channel::Input, &key(true), later);
    s.message(Channel::Input, &key(true), later);
    let out = outputs(&mut s);
    assert_eq!(
        notice_codes(&out),
        [(Channel::Input, notice::NOT_ALLOWED, 0)]
    );
    // Transfers refused for their size are each told, on the clipboard channel.
    let mut s = open(ALL, &[Channel::Input, Channel::Clipboard]);
    for transfer in 1..=3 {
        let chunk = Message::ClipboardData {
            transfer,
            mime: Mime::Text,
            total: 5000,
            offset: 0,
            data: vec![b'a'; 100],
        };
        s.message(Channel::Clipboard, &encode(&chunk), t0);
    }
    let out = outputs(&mut s);
    assert_eq!(
        notice_codes(&out),
        [
            (Channel::Clipboard, notice::CLIPBOARD_TOO_LARGE, 1),
            (Channel::Clipboard, notice::CLIPBOARD_TOO_LARGE, 2),
            (Channel::Clipboard, notice::CLIPBOARD_TOO_LARGE, 3),
        ]
    );
    assert_eq!(counted(&out), [Counter::ClipboardRefused; 3]);
}

#[test]
fn accepted_messages_become_actions_and_are_counted() {
    let mut s = open(CONTROL, &[Channel::Input, Channel::Pointer]);
    let t0 = Instant::now();
    s.message(Channel::Input, &key(true), t0);
    s.message(
        Channel::Input,
        &encode(&Message::SelectMonitor { index: 1 }),
        t0,
    );
    assert_eq!(
        outputs(&mut s),
        [
            Output::Count(Counter::InputForwarded),
            Output::Act(Action::Inject(Message::Key {
                pressed: true,
                code: "KeyA".into()
            })),
            Output::Act(Action::SelectMonitor(1)),
        ]
    );
    // A key on the lossy channel is malformed, and counted as such.
    s.message(Channel::Pointer, &key(false), t0);
    assert_eq!(outputs(&mut s), [Output::Count(Counter::MalformedMessages)]);
}

#[test]
fn host_clipboards_go_to_an_open_channel_with_the_right_under_increasing_transfer_ids() {
    let data = Arc::new(vec![7u8; protocol::CLIPBOARD_CHUNK + 10]);
    let event = HostEvent::Clipboard {
        mime: Mime::Png,
        data: data.clone(),
    };
    let mut s = open(ALL, &[Channel::Input, Channel::Clipboard]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        s.host_event(&event);
        let out = outputs(&mut s);
        let chunks: Vec<(u32, u32)> = sent(&out)
            .into_iter()
            .map(|(ch, m)| match m {
                Message::ClipboardData {
                    transfer, offset, ..
                } if ch == Channel::Clipboard => (transfer, offset),
                other => panic!("{other:?} on {ch:?}"),
            })
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].0, chunks[1].0, "one transfer");
        assert_eq!(
            out.last(),
            Some(&Output::Count(Counter::ClipboardSent)),
            "counted once, after its chunks"
        );
        ids.push(chunks[0].0);
    }
    assert_eq!(ids, [1, 2, 3]);
    // Without the right: nothing, and no transfer id spent.
    s.rights_changed(CONTROL);
    outputs(&mut s);
    s.host_event(&event);
    assert_eq!(outputs(&mut s), []);
    s.rights_changed(ALL);
    outputs(&mut s);
    s.host_event(&event);
    let out = outputs(&mut s);
    assert!(matches!(
        &sent(&out)[0].1,
        Message::ClipboardData { transfer: 4, .. }
    ));
    // A send that fails cuts the transfer short, and it is not counted.
    s.host_event(&event);
    assert!(matches!(
        s.poll_output(),
        Some(Output::Send(Channel::Clipboard, _))
    ));
    s.send_failed(Channel::Clipboard);
    assert_eq!(outputs(&mut s), []);
}

#[test]
fn nothing_is_sent_on_a_channel_that_is_not_open() {
    let mut s = ViewerSession::new(1, 1024, ALL);
    let position = Message::CursorPosition {
        x: 1,
        y: 2,
        visible: true,
    };
    let shape = Arc::new(Message::CursorShape {
        hot_x: 0,
        hot_y: 0,
        width: 1,
        height: 1,
        rgba: vec![0; 4],
    });
    s.host_event(&HostEvent::CursorPosition(position.clone()));
    s.host_event(&HostEvent::CursorShape(shape.clone()));
    s.host_event(&HostEvent::Clipboard {
        mime: Mime::Text,
        data: Arc::new(b"hi".to_vec()),
    });
    s.rights_changed(ALL);
    s.bye(notice::REMOVED);
    s.message(Channel::Input, &[0xee], Instant::now());
    s.message(Channel::Input, &key(true), Instant::now());
    assert!(sent(&outputs(&mut s)).is_empty());
    // Opened, then closed: nothing again.
    s.channel_opened(Channel::Pointer, &Replay::default());
    s.host_event(&HostEvent::CursorPosition(position.clone()));
    assert_eq!(
        sent(&outputs(&mut s)),
        [(Channel::Pointer, position.clone())]
    );
    s.channel_closed(Channel::Pointer);
    s.host_event(&HostEvent::CursorPosition(position));
    assert_eq!(outputs(&mut s), []);
    // The shape goes on input, not on the open pointer channel.
    s.channel_opened(Channel::Pointer, &Replay::default());
    s.host_event(&HostEvent::CursorShape(shape));
    assert_eq!(outputs(&mut s), []);
}

#[test]
fn an_opened_channel_gets_what_it_joins_into_once() {
    let position = Message::CursorPosition {
        x: 5,
        y: 6,
        visible: false,
    };
    let shape = Arc::new(Message::CursorShape {
        hot_x: 1,
        hot_y: 0,
        width: 2,
        height: 1,
        rgba: vec![9; 8],
    });
    let monitors = Arc::new(Message::Monitors {
        current: 0,
        monitors: vec![MonitorEntry {
            name: "LEFT".into(),
            x: 0,
            y: 0,
            width: 1280,
            height: 720,
            primary: true,
        }],
    });
    let replay = Replay {
        cursor_position: Some(position.clone()),
        cursor_shape: Some(shape.clone()),
        monitors: Some(monitors.clone()),
    };
    let mut s = ViewerSession::new(1, 4096, CONTROL);
    s.channel_opened(Channel::Input, &replay);
    assert_eq!(
        sent(&outputs(&mut s)),
        [
            (
                Channel::Input,
                Message::Rights {
                    rights: CONTROL.bits(),
                    clipboard_max: 4096
                }
            ),
            (Channel::Input, (*shape).clone()),
            (Channel::Input, (*monitors).clone()),
        ]
    );
    s.channel_opened(Channel::Input, &replay);
    assert_eq!(outputs(&mut s), [], "open once");
    s.channel_opened(Channel::Pointer, &replay);
    assert_eq!(sent(&outputs(&mut s)), [(Channel::Pointer, position)]);
    s.channel_opened(Channel::Clipboard, &replay);
    assert_eq!(outputs(&mut s), [], "no clipboard replayed");
    // A message that would not encode (a hot spot outside its image) is left out,
    // and the rest still goes.
    let mut s = ViewerSession::new(1, 4096, CONTROL);
    let bad_shape = Message::CursorShape {
        hot_x: 1,
        hot_y: 1,
        width: 2,
        height: 1,
        rgba: vec![9; 8],
    };
    assert!(bad_shape.encode().is_err());
    let replay = Replay {
        cursor_shape: Some(Arc::new(bad_shape)),
        ..replay
    };
    s.channel_opened(Channel::Input, &replay);
    let out = sent(&outputs(&mut s));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], (Channel::Input, (*monitors).clone()));
    // An empty replay: the rights only.
    let mut s = ViewerSession::new(1, 4096, Rights::default());
    s.channel_opened(Channel::Input, &Replay::default());
    assert_eq!(
        sent(&outputs(&mut s)),
        [(
            Channel::Input,
            Message::Rights {
                rights: Rights::default().bits(),
                clipboard_max: 4096
            }
        )]
    );
}

#[test]
fn input_ends_when_its_channel_closes_and_when_control_goes() {
    let t0 = Instant::now();
    let mut s = open(CONTROL, &[Channel::Input]);
    s.message(Channel::Input, &key(true), t0);
    outputs(&mut s);
    s.channel_closed(Channel::Input);
    assert_eq!(outputs(&mut s), [Output::EndInput]);
    s.channel_closed(Channel::Pointer);
    assert_eq!(outputs(&mut s), [], "only input's closing ends input");

    let mut s = open(CONTROL, &[Channel::Input]);
    s.rights_changed(ALL);
    let out = outputs(&mut s);
    assert!(!out.contains(&Output::EndInput), "control kept");
    assert_eq!(
        sent(&out),
        [(
            Channel::Input,
            Message::Rights {
                rights: ALL.bits(),
                clipboard_max: 1024
            }
        )]
    );
    s.rights_changed(Rights::default());
    let out = outputs(&mut s);
    assert_eq!(
        out[0],
        Output::EndInput,
        "input ends before the viewer is told"
    );
    assert_eq!(
        sent(&out),
        [(
            Channel::Input,
            Message::Rights {
                rights: Rights::default().bits(),
                clipboard_max: 1024
            }
        )]
    );
    assert_eq!(s.rights(), Rights::default());
    // Its keys now count as not held: a release is one more message, refused.
    s.message(Channel::Input, &key(false), t0);
    assert_eq!(
        counted(&outputs(&mut s)),
        [Counter::InputRefused],
        "judged with the new rights"
    );
}

#[test]
fn the_bye_says_why() {
    let text = |code| {
        let mut s = open(Rights::default(), &[Channel::Input]);
        s.bye(code);
        match &sent(&outputs(&mut s))[..] {
            [(
                Channel::Input,
                Message::Notice {
                    code: c,
                    transfer: 0,
                    text,
                },
            )] if *c == code => text.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(text(notice::HOST_STOPPED), "The host stopped sharing.");
    assert_eq!(text(notice::REMOVED), "The host ended your session.");
}
