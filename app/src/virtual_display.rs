//! `--virtual WxH`: a private Xvfb display (with a live test picture) for machines
//! without a screen.

/// Why a `WxH` size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("expected WIDTHxHEIGHT, e.g. 1920x1080, not {0:?}")]
    Shape(String),
    #[error("{0:?} is not a number of pixels")]
    Number(String),
    #[error("{0}x{1} is out of range (16x16 to 7680x4320)")]
    Range(u32, u32),
}

/// Parses `WxH`, e.g. `1920x1080`.
pub fn parse_size(text: &str) -> Result<(u32, u32), SizeError> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| SizeError::Shape(text.to_owned()))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| SizeError::Number(s.to_owned()))
    };
    let (w, h) = (parse(w)?, parse(h)?);
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
        return Err(SizeError::Range(w, h));
    }
    Ok((w, h))
}

/// A private display for `--virtual`.
pub struct VirtualDisplay {
    pub name: String,
    _xvfb: media::xvfb::Xvfb,
}

impl VirtualDisplay {
    pub fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let xvfb = match media::xvfb::Xvfb::start(width, height, 50..200) {
            Err(media::xvfb::XvfbError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!(
                    "--virtual needs Xvfb, which is not installed: install the xvfb package \
                     (sudo apt install xvfb)"
                )
            }
            other => other?,
        };
        let name = xvfb.name.clone();
        tracing::info!(%name, width, height, "started a virtual display");
        Ok(Self { name, _xvfb: xvfb })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, SizeError};

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        assert_eq!(parse_size("640X480"), Ok((640, 480)));
        assert_eq!(parse_size("1920"), Err(SizeError::Shape("1920".into())));
        assert_eq!(parse_size("0x0"), Err(SizeError::Range(0, 0)));
        assert_eq!(parse_size("axb"), Err(SizeError::Number("a".into())));
    }
}
