//! The admin HTTP endpoint: `/healthz` (process alive), `/readyz` (every shard recovered its
//! partitions and listens; in a cluster also: this node's registration is in the metadata log) and `/metrics` (Prometheus; see [`crate::metrics`]). Plain HTTP/1.1,
//! one request per connection, the request head bounded in bytes and time.

use std::rc::Rc;
use std::time::Duration;

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::limits;
use crate::metrics;
use crate::runtime::Shard;
use crate::cluster::ClusterOf;

pub async fn serve(listener: TcpListener, shard: Rc<Shard>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                compio::runtime::spawn(answer(stream, shard.clone())).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                compio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads the request head (up to the blank line), bounded in bytes.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::with_capacity(1024);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < limits::ADMIN_REQUEST_BYTES_MAX {
        let buf = Vec::with_capacity(1024);
        let BufResult(r, buf) = stream.read(buf).await;
        match r {
            Ok(0) | Err(_) => break,
            Ok(_) => head.extend_from_slice(&buf),
        }
    }
    head
}

/// The value of header `name` (case-insensitive) in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn answer(mut stream: TcpStream, shard: Rc<Shard>) {
    let read = compio::time::timeout(Duration::from_millis(limits::ADMIN_REQUEST_MS_MAX), read_head(&mut stream)).await;
    let Ok(head) = read else { return };
    let head = String::from_utf8_lossy(&head).to_string();
    let line = head.lines().next().unwrap_or("");
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let shared = shard.shared.clone();
    let (status, content_type, body) = match path {
        "/healthz" => ("200 OK", metrics::TEXT_CONTENT_TYPE, "ok\n".to_string()),
        "/readyz" if shared.is_ready() && shared.joined() => ("200 OK", metrics::TEXT_CONTENT_TYPE, "ready\n".to_string()),
        "/readyz" if shared.is_ready() => ("503 Service Unavailable", metrics::TEXT_CONTENT_TYPE, "joining the cluster\n".to_string()),
        "/readyz" => ("503 Service Unavailable", metrics::TEXT_CONTENT_TYPE, "recovering\n".to_string()),
        "/metrics" => {
            let om = header(&head, "accept").is_some_and(metrics::wants_openmetrics);
            match metrics::gather(&shard).await {
                Ok(snaps) => {
                    // Merging and encoding (milliseconds for thousands of partitions) runs on
                    // compio's blocking pool, not on this shard's executor.
                    let shared = shared.clone();
                    let rendered = compio::runtime::spawn_blocking(move || {
                        let view = metrics::BrokerView::of(&shared);
                        metrics::render(&view, &snaps, om)
                    })
                    .await;
                    let ct = if om { metrics::OPENMETRICS_CONTENT_TYPE } else { metrics::TEXT_CONTENT_TYPE };
                    match rendered {
                        Ok(body) => ("200 OK", ct, body),
                        Err(_) => ("500 Internal Server Error", metrics::TEXT_CONTENT_TYPE, "rendering metrics failed\n".to_string()),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics scrape failed");
                    ("503 Service Unavailable", metrics::TEXT_CONTENT_TYPE, format!("{e}\n"))
                }
            }
        }
        _ => ("404 Not Found", metrics::TEXT_CONTENT_TYPE, "not found\n".to_string()),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(resp).await;
}
