//! The viewer page, embedded in the binary (files live in the repository's `assets/`).

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/index.html"),
    },
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/index.html"),
    },
    Asset {
        path: "/viewer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/viewer.js"),
    },
    Asset {
        path: "/protocol.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/protocol.js"),
    },
    Asset {
        path: "/viewer.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/viewer.css"),
    },
    Asset {
        path: "/pake.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/pake.js"),
    },
    Asset {
        // Built from `pake/` by build.rs.
        path: "/pake.wasm",
        content_type: "application/wasm",
        body: include_bytes!(concat!(env!("OUT_DIR"), "/pake.wasm")),
    },
];

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
