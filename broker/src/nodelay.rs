//! Nagle's algorithm off on every connection of the embedded broker.
//!
//! rumqttd binds its listener itself and never sets `TCP_NODELAY`, so a
//! small packet written right after another (an assignment after the
//! `PUBACK` of the worker's last status) waited for the client's delayed
//! acknowledgement: 40 ms on Linux, measured as the dispatch p99 of
//! `./dev bench dispatch`. On Linux an accepted socket inherits
//! `TCP_NODELAY` from its listener, so the listener is found among this
//! process's descriptors by its address and the option set on it once,
//! before the broker is announced as ready.

use std::net::SocketAddr;

/// Sets `TCP_NODELAY` on the listening socket bound to `listen`'s port;
/// false when none was found.
#[cfg(target_os = "linux")]
pub fn on_listener(listen: SocketAddr) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    let mut done = false;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        if listening_port(fd) == Some(listen.port()) {
            let on: libc::c_int = 1;
            // SAFETY: `fd` is an open socket of this process (checked by
            // getsockname and SO_ACCEPTCONN); the option value is a valid
            // c_int of the size given.
            let set = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            done |= set == 0;
        }
    }
    done
}

#[cfg(not(target_os = "linux"))]
pub fn on_listener(_listen: SocketAddr) -> bool {
    false
}

/// The port of `fd` if it is a listening TCP socket.
#[cfg(target_os = "linux")]
fn listening_port(fd: libc::c_int) -> Option<u16> {
    // SAFETY: sockaddr_storage is plain data, valid when zeroed; getsockname
    // and getsockopt write at most the lengths given and fail on
    // descriptors that are not sockets.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return None;
        }
        let port = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let v4 = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                u16::from_be(v4.sin_port)
            }
            libc::AF_INET6 => {
                let v6 = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                u16::from_be(v6.sin6_port)
            }
            _ => return None,
        };
        let mut listening: libc::c_int = 0;
        let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut size,
        ) == 0;
        (ok && listening == 1).then_some(port)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nodelay(s: &std::net::TcpStream) -> bool {
        s.nodelay().unwrap_or(false)
    }

    #[test]
    fn accepted_connections_inherit_it_from_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        // A connection to the listener is not itself a listener.
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (before, _) = listener.accept().expect("accept");
        assert!(!nodelay(&before));
        assert!(on_listener(addr));
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (after, _) = listener.accept().expect("accept");
        assert!(nodelay(&after));
        assert!(!on_listener("127.0.0.1:9".parse().expect("address")));
    }
}
