//! The client's HTTP/1.1: pairing with the share and one bounded request at a time.

use super::*;

/// What one request got back: the body was read whole, within `HttpLimits`.
pub(super) struct HttpResponse {
    pub(super) status: u16,
    pub(super) location: Option<Vec<u8>>,
    /// `Porthole-Answer-MAC`, if any.
    pub(super) answer_mac: Option<String>,
    pub(super) body: Vec<u8>,
}

/// One request to the share.
pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) authorization: Option<String>,
    /// Content type and bytes.
    pub(super) body: Option<(&'static str, Vec<u8>)>,
    /// The viewer's name for the host (`Porthole-Viewer-Name`).
    pub(super) name: Option<String>,
}

/// A finished pairing with the share (see [`crate::pairing`]).
pub(super) struct Paired {
    pub(super) id: String,
    pub(super) keys: crate::pairing::Keys,
}

impl Paired {
    pub(super) fn authorization(&self, method: &str, path: &str, body: &[u8]) -> String {
        crate::pairing::authorization(&self.id, &self.keys, method, path, body)
    }
}

/// Round one: pairs with the share using `code` (which is never sent). A wrong code, or a
/// share that does not hold it, is [`ClientError::WrongCode`].
pub(super) async fn pair(
    url: &ShareUrl,
    code: &str,
    limits: &HttpLimits,
) -> Result<Paired, ClientError> {
    use crate::pairing::{PairReply, PairRequest, PakeError, ViewerPairing};
    let pairing = ViewerPairing::start(code, rand::random());
    let body = serde_json::to_vec(&PairRequest {
        message: crate::pairing::encode(pairing.message()),
    })
    .expect("a JSON object of one string");
    let request = Request {
        method: "POST",
        path: "/pake",
        authorization: None,
        body: Some(("application/json", body)),
        name: None,
    };
    let r = http(url, request, limits).await?;
    let bad = |why: &str| ClientError::BadAnswer(url.authority(), why.to_owned());
    if r.status != 200 {
        // A refusal (throttled, expired code, ...) reads like one of the offer's.
        return Err(refusal(r.status, &r.body));
    }
    let reply: PairReply =
        serde_json::from_slice(&r.body).map_err(|_| bad("the pairing reply is not JSON"))?;
    let (Some(message), Some(confirm)) = (
        crate::pairing::decode(&reply.message),
        crate::pairing::decode(&reply.confirm),
    ) else {
        return Err(bad("the pairing reply is not base64"));
    };
    if !crate::pairing::is_pairing_id(&reply.id) {
        return Err(bad("the pairing reply has no usable id"));
    }
    match pairing.finish(&message, &confirm) {
        Ok(keys) => Ok(Paired { id: reply.id, keys }),
        Err(PakeError::NotConfirmed) => Err(ClientError::WrongCode),
        Err(PakeError::BadMessage) => Err(bad("the pairing message is malformed")),
    }
}

/// Aborts the connection's task however the request ends.
pub(super) struct AbortOnDrop<T = ()>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 request to the share, bounded in time and size by `limits`.
pub(super) async fn http(
    url: &ShareUrl,
    request: Request<'_>,
    limits: &HttpLimits,
) -> Result<HttpResponse, ClientError> {
    let authority = url.authority();
    let unreachable = |e: String| ClientError::Unreachable(authority.clone(), e);
    let bad = |e: String| ClientError::BadAnswer(authority.clone(), e);
    let stream = tokio::time::timeout(limits.connect, tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut req = hyper::Request::builder()
        .method(request.method)
        .uri(request.path)
        .header(header::HOST, &authority);
    if let Some(auth) = request.authorization {
        req = req.header(header::AUTHORIZATION, auth);
    }
    if let Some(name) = &request.name {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        req = req.header(crate::pairing::NAME_HEADER, encoded);
    }
    let body = match request.body {
        Some((content_type, bytes)) => {
            req = req.header(header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = tokio::time::timeout(limits.response, sender.send_request(req))
        .await
        .map_err(|_| {
            bad(format!(
                "no answer within {} s",
                limits.response.as_secs_f32()
            ))
        })?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.as_bytes().to_vec());
    let answer_mac = resp
        .headers()
        .get(crate::pairing::ANSWER_MAC_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max = limits.max_body;
    let body = tokio::time::timeout(
        limits.body,
        http_body_util::Limited::new(resp.into_body(), max).collect(),
    )
    .await
    .map_err(|_| {
        bad(format!(
            "the body did not arrive within {} s",
            limits.body.as_secs_f32()
        ))
    })?
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            bad(format!("the body is larger than {max} bytes"))
        } else {
            unreachable(e.to_string())
        }
    })?
    .to_bytes();
    Ok(HttpResponse {
        status,
        location,
        answer_mac,
        body: body.to_vec(),
    })
}
