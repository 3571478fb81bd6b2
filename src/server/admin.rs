//! The admin HTTP endpoint: `/healthz` (process alive) and `/readyz` (every shard recovered
//! its partitions and listens). Plain HTTP/1.1, one request per connection, bounded reads.

use std::sync::Arc;

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::runtime::Shared;

/// Largest request head the admin endpoint reads.
const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                compio::runtime::spawn(answer(stream, shared.clone())).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                compio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::with_capacity(1024);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < ADMIN_REQUEST_BYTES_MAX {
        let buf = Vec::with_capacity(1024);
        let BufResult(r, buf) = stream.read(buf).await;
        match r {
            Ok(0) | Err(_) => break,
            Ok(_) => head.extend_from_slice(&buf),
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(&[])).to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/healthz" => ("200 OK", "ok\n".to_string()),
        "/readyz" if shared.is_ready() => ("200 OK", "ready\n".to_string()),
        "/readyz" => ("503 Service Unavailable", "recovering\n".to_string()),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.into_bytes()).await;
}
