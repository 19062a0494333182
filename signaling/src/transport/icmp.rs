//! ICMP errors for our UDP datagrams: which destination is unreachable
//!
//! The UDP listeners are unconnected sockets shared by every peer, and Linux reports ICMP errors
//! to those only with `IP_RECVERR`/`IPV6_RECVERR`: each error is queued on the socket's error
//! queue with the failed datagram's destination (RFC 1122 §4.1.3.3 leaves the rest to the
//! application). A connected socket per peer would surface ECONNREFUSED by itself, but it would
//! need its own port (so its own Via) and its own receive loop per destination; the error queue
//! keeps one socket and names the destination, so every transaction towards it can fail at once.
//!
//! While an error waits in the queue the socket also holds it as a pending error, which the next
//! `sendto` (to any destination) returns instead of sending, and the next receive instead of
//! reading: [`pending_icmp`] recognises it (a send is then tried once more).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::Inner;

/// Asks the kernel to queue ICMP errors on `sock` (IPv4 or IPv6 by its address).
pub(super) fn enable(sock: &UdpSocket, local: SocketAddr) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    if local.is_ipv4() {
        setsockopt(fd, sockopt::Ipv4RecvErr, &true)?;
    } else {
        setsockopt(fd, sockopt::Ipv6RecvErr, &true)?;
    }
    Ok(())
}

/// The errors that mean nobody is there.
fn unreachable(errno: u32) -> bool {
    [Errno::ECONNREFUSED, Errno::EHOSTUNREACH, Errno::ENETUNREACH]
        .iter()
        .any(|e| *e as u32 == errno)
}

/// Whether `e` is the socket's pending ICMP error (an earlier datagram's), not a failure of the
/// send or receive that returned it.
pub(super) fn pending_icmp(e: &io::Error) -> bool {
    e.raw_os_error()
        .and_then(|n| u32::try_from(n).ok())
        .is_some_and(unreachable)
}

/// Reads `sock`'s error queue as errors arrive and reports each unreachable destination.
pub(super) async fn watch(inner: Arc<Inner>, sock: Arc<UdpSocket>) {
    loop {
        if sock.ready(Interest::ERROR).await.is_err() {
            return;
        }
        // Drained until it would block, which clears the readiness.
        let _ = sock.try_io(Interest::ERROR, || drain(&inner, &sock));
    }
}

/// Reports every error queued on `sock`; Err(WouldBlock) once the queue is empty. Also called
/// by the receive loop when a receive returns the pending error: the readiness event of an
/// error that arrives while that loop is reading can be folded into the one it consumes.
pub(super) fn drain(inner: &Inner, sock: &UdpSocket) -> io::Result<()> {
    loop {
        match read_one(sock) {
            Ok(Some(dest)) => {
                tracing::debug!(%dest, "ICMP: destination unreachable");
                inner.report_unreachable(dest);
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "UDP error queue unreadable");
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

/// One queued error: the failed datagram's destination when the error says it is unreachable.
fn read_one(sock: &UdpSocket) -> io::Result<Option<SocketAddr>> {
    let mut buf = [0u8; 64];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let refused = msg.cmsgs().any(|c| match c {
        ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) => {
            unreachable(e.ee_errno)
        }
        _ => false,
    });
    let dest = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            })
    });
    Ok(dest.filter(|_| refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram to a closed port comes back as that port's address on the error queue.
    #[tokio::test]
    async fn a_closed_port_is_reported() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable(&sock, sock.local_addr().unwrap()).unwrap();
        // A port nobody listens on: bound, then closed.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        sock.send_to(b"x", closed).await.unwrap();
        let dest = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                sock.ready(Interest::ERROR).await.unwrap();
                if let Ok(Some(d)) = sock.try_io(Interest::ERROR, || read_one(&sock)) {
                    return d;
                }
            }
        })
        .await
        .expect("an ICMP error within 5 s");
        assert_eq!(dest, closed);
        // The pending error went with the queue: the socket sends again.
        sock.send_to(b"y", closed).await.unwrap();
    }
}
