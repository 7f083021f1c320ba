//! Bounds on what callers can make a server hold: open connections,
//! concurrent calls per connection and HTTP/2 streams. Message sizes are
//! bounded per service (`max_decoding_message_size`); the coordinator's
//! services' bound, which its clients share, is here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::Server;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The largest message of the coordinator's job and worker services,
/// either way; both ends set it.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Connections a server holds open at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Calls one connection may have in flight; more wait their turn.
pub const MAX_CALLS_PER_CONNECTION: usize = 64;
/// HTTP/2 streams one connection may open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// A server builder with the per-connection bounds applied.
pub fn bounded(server: Server) -> Server {
    server
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
}

/// The connections `listener` accepts, at most `max` open at once: past
/// that it accepts nothing until one closes, and new callers wait in the
/// kernel's backlog instead of costing memory here.
pub fn incoming(
    listener: TcpListener,
    max: usize,
) -> impl Stream<Item = io::Result<BoundedStream>> + Send + 'static {
    let permits = Arc::new(Semaphore::new(max.max(1)));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let accepted = listener.accept().await.map(|(stream, _)| {
            // Small messages (heartbeats, task requests) go out at once.
            let _ = stream.set_nodelay(true);
            BoundedStream {
                stream,
                _permit: permit,
            }
        });
        Some((accepted, (listener, permits)))
    })
}

/// An accepted connection that frees its place when it closes.
#[derive(Debug)]
pub struct BoundedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for BoundedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn past_the_bound_nothing_is_accepted_until_a_connection_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut accepted = Box::pin(incoming(listener, 2));
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(address).await.unwrap());
            held.push(accepted.next().await.unwrap().unwrap());
        }
        // The kernel completes the third handshake; the server does not
        // take the connection while two are open.
        clients.push(TcpStream::connect(address).await.unwrap());
        assert!(accepted.next().now_or_never().is_none());
        drop(held.remove(0));
        let third = accepted.next().await.unwrap().unwrap();
        assert_eq!(
            third.connect_info().remote_addr(),
            Some(clients[2].local_addr().unwrap())
        );
    }
}
