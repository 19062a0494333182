//! TCP and TLS: accept loops, outbound connects, and one task per connection that frames the
//! byte stream by Content-Length and enforces the message deadline and the idle timeout

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::{
    CLOSED_METRIC, CONNECTIONS_METRIC, ConnHandle, Inner, SENT_METRIC, Transport, TransportError,
    drop_counted,
};
use crate::message::{Frame, frame};

/// One place in the connection limit, given back on drop.
struct ConnSlot(Arc<Inner>);

impl ConnSlot {
    fn take(inner: &Arc<Inner>) -> Option<ConnSlot> {
        let max = inner.limits.max_connections;
        inner
            .conn_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|n| {
                metrics::gauge!(CONNECTIONS_METRIC).set((n + 1) as f64);
                ConnSlot(inner.clone())
            })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let n = self.0.conn_count.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(CONNECTIONS_METRIC).set(n.saturating_sub(1) as f64);
    }
}

pub(super) async fn accept_loop(inner: Arc<Inner>, transport: Transport, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%transport, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = ConnSlot::take(&inner) else {
            drop_counted("max_connections");
            tracing::debug!(%peer, %transport, "connection refused: limit reached");
            continue;
        };
        tokio::spawn(serve_inbound(inner.clone(), transport, tcp, peer, slot));
    }
}

async fn serve_inbound(
    inner: Arc<Inner>,
    transport: Transport,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: ConnSlot,
) {
    let Ok(local) = tcp.local_addr() else { return };
    let reason = match (transport, &inner.tls_server) {
        (Transport::Tls, Some(acceptor)) => {
            match timeout(inner.limits.message_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => registered(&inner, transport, peer, local, tls).await,
                _ => "handshake",
            }
        }
        (Transport::Tls, None) => "handshake",
        _ => registered(&inner, transport, peer, local, tcp).await,
    };
    closed(transport, peer, reason);
    drop(slot);
}

/// Opens a connection to `target` and queues `first` on it; later sends to `target` queue on
/// the same connection while it connects.
pub(super) fn connect(
    inner: &Arc<Inner>,
    transport: Transport,
    target: SocketAddr,
    first: Bytes,
) -> Result<(), TransportError> {
    let connector = match transport {
        Transport::Tls => Some(
            inner
                .tls_client
                .clone()
                .ok_or(TransportError::Unsupported(Transport::Tls))?,
        ),
        _ => None,
    };
    let Some(slot) = ConnSlot::take(inner) else {
        drop_counted("max_connections");
        return Err(TransportError::NoRoute(target));
    };
    let (tx, rx) = mpsc::channel(inner.limits.connection_queue.max(1));
    let id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    // The queue is new and empty: the first message fits.
    tx.try_send(first).ok();
    inner
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((transport, target), ConnHandle { id, tx });
    let inner = inner.clone();
    tokio::spawn(async move {
        let limits = inner.limits;
        let reason = match timeout(limits.message_timeout, TcpStream::connect(target)).await {
            Ok(Ok(tcp)) => {
                let local = tcp.local_addr().unwrap_or(target);
                match connector {
                    Some(c) => {
                        let name = rustls::pki_types::ServerName::from(target.ip());
                        match timeout(limits.message_timeout, c.connect(name, tcp)).await {
                            Ok(Ok(tls)) => {
                                run_registered(&inner, transport, target, local, tls, rx).await
                            }
                            _ => "handshake",
                        }
                    }
                    None => run_registered(&inner, transport, target, local, tcp, rx).await,
                }
            }
            _ => {
                drop_counted("connect_failed");
                tracing::debug!(%target, %transport, "connect failed");
                inner.report_unreachable(target);
                "connect_failed"
            }
        };
        inner.remove_conn(transport, target, id);
        closed(transport, target, reason);
        drop(slot);
    });
    Ok(())
}

fn closed(transport: Transport, peer: SocketAddr, reason: &'static str) {
    metrics::counter!(CLOSED_METRIC, "reason" => reason).increment(1);
    tracing::debug!(%peer, %transport, reason, "connection closed");
}

/// Registers a new inbound connection in the table, runs it, unregisters it.
async fn registered<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Arc<Inner>,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    stream: S,
) -> &'static str {
    let (tx, rx) = mpsc::channel(inner.limits.connection_queue.max(1));
    let id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    inner
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((transport, peer), ConnHandle { id, tx });
    let reason = run_registered(inner, transport, peer, local, stream, rx).await;
    inner.remove_conn(transport, peer, id);
    reason
}

async fn run_registered<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Inner,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    stream: S,
    rx: mpsc::Receiver<Bytes>,
) -> &'static str {
    Connection {
        inner,
        transport,
        peer,
        local,
    }
    .run(stream, rx)
    .await
}

struct Connection<'a> {
    inner: &'a Inner,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Connection<'_> {
    /// Reads, frames and hands on messages; writes queued ones; returns why it closed.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        mut rx: mpsc::Receiver<Bytes>,
    ) -> &'static str {
        let limits = self.inner.limits;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        // When the unfinished message at the head of `buf` began arriving.
        let mut started: Option<Instant> = None;
        let mut last = Instant::now();
        loop {
            let deadline = match started {
                Some(t) => t + limits.message_timeout,
                None => last + limits.idle_timeout,
            };
            tokio::select! {
                r = stream.read(&mut chunk) => {
                    let n = match r {
                        Ok(0) => return "eof",
                        Ok(n) => n,
                        Err(_) => return "error",
                    };
                    last = Instant::now();
                    buf.extend_from_slice(&chunk[..n]);
                    let (consumed, result) = self.drain_frames(&mut buf, &mut stream).await;
                    if let Err(reason) = result {
                        return reason;
                    }
                    started = match (buf.is_empty(), consumed) {
                        (true, _) => None,
                        (false, true) => Some(last),
                        (false, false) => started.or(Some(last)),
                    };
                }
                out = rx.recv() => {
                    let Some(bytes) = out else { return "replaced" };
                    if self.write(&mut stream, &bytes).await.is_err() {
                        return "error";
                    }
                    last = Instant::now();
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return if started.is_some() { "message_timeout" } else { "idle" };
                }
            }
        }
    }

    /// Takes every whole message off the front of `buf`; `true` if any bytes were consumed.
    async fn drain_frames<S: AsyncWrite + Unpin>(
        &self,
        buf: &mut Vec<u8>,
        stream: &mut S,
    ) -> (bool, Result<(), &'static str>) {
        let mut consumed = false;
        loop {
            match frame(buf, self.inner.limits.max_message_size) {
                Ok(Frame::Incomplete) => return (consumed, Ok(())),
                Ok(Frame::Keepalive(k)) => {
                    buf.drain(..k);
                    consumed = true;
                    // RFC 5626 §4.4.1: a double-CRLF ping gets a single-CRLF pong.
                    if k >= 4 && self.write(stream, b"\r\n").await.is_err() {
                        return (consumed, Err("error"));
                    }
                }
                Ok(Frame::Message(k)) => {
                    let reply =
                        self.inner
                            .on_bytes(self.transport, self.peer, self.local, &buf[..k]);
                    buf.drain(..k);
                    consumed = true;
                    if let Some(r) = reply
                        && self.write(stream, &r).await.is_err()
                    {
                        return (consumed, Err("error"));
                    }
                }
                Err(e) => {
                    // The stream cannot be re-synchronised: answer if possible, then close.
                    if let Some(r) = self.inner.reject(self.transport, self.peer, buf, &e) {
                        self.write(stream, &r).await.ok();
                    }
                    return (consumed, Err("framing"));
                }
            }
        }
    }

    async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S, bytes: &[u8]) -> Result<(), ()> {
        let limit = self.inner.limits.message_timeout;
        match timeout(limit, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => {
                if bytes != b"\r\n" {
                    metrics::counter!(SENT_METRIC, "transport" => self.transport.as_str())
                        .increment(1);
                }
                Ok(())
            }
            _ => {
                drop_counted("send_failed");
                Err(())
            }
        }
    }
}
