//! `GET /api/stats`: the share's counters as JSON, for a paired viewer (or a bearer player
//! where allowed). The keys net publishes are [`Stat::ALL`]'s names; the media source's
//! ([`super::MediaStats`]) come after them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::admit::lock_viewers;
use super::auth::Authorized;
use super::AppState;
use crate::stats::Stat;

pub(super) async fn get_stats(State(state): State<Arc<AppState>>, _: Authorized) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::Value::Object(stats(&state))),
    )
        .into_response()
}

/// Every counter, by its key.
fn stats(state: &AppState) -> serde_json::Map<String, serde_json::Value> {
    let (viewers, connected, reconnecting) = {
        let v = lock_viewers(state);
        (
            v.len(),
            v.values().filter(|e| e.info.connected).count(),
            v.values().filter(|e| e.info.reconnecting).count(),
        )
    };
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let value = |stat: Stat| match stat {
        Stat::Viewers => viewers as u64,
        Stat::ViewersConnected => connected as u64,
        Stat::ViewersReconnecting => reconnecting as u64,
        Stat::VideoUnitsPublished => get(&state.video.units_published),
        Stat::AudioPacketsPublished => state.audio.as_ref().map_or(0, |a| get(&a.units_published)),
        Stat::KeyframesRequested => get(&state.video.keyframes_requested),
        Stat::Counted(counter) => state.counters.get(counter),
    };
    let mut map = serde_json::Map::new();
    for stat in Stat::ALL {
        map.insert(stat.name().to_owned(), value(stat).into());
    }
    for (k, v) in (state.config.media_stats)() {
        map.insert(k.to_owned(), v.into());
    }
    map
}
