//! The sockets a process listens on, read the way `ss -lp` does: the
//! socket inodes among its open files (`/proc/<pid>/fd`), matched against
//! the kernel's socket tables (`/proc/<pid>/net/{tcp,tcp6,udp,udp6}`).
//!
//! A TCP socket listens in state `LISTEN`; a UDP socket receives from
//! anyone while it is not connected to one peer (its remote address is all
//! zeros). The table format is the kernel's `Documentation/networking/
//! proc_net_tcp.rst`: `local_address` is the address as the kernel stores
//! it, printed word by word as host-order (little-endian here) hex, then
//! the port in hex; column 4 is the state (`0A` is `TCP_LISTEN`); column 10
//! is the inode.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP, in `LISTEN`.
    Tcp,
    /// UDP, not connected.
    Udp,
}

/// One listening socket of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listening {
    /// Its protocol.
    pub proto: Proto,
    /// Its local address (an IPv4-mapped IPv6 address is shown as IPv4).
    pub addr: SocketAddr,
}

impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.proto, self.addr)
    }
}

/// Every socket process `pid` listens on now. Panics if `/proc` cannot be
/// read (the process is gone, or this is not Linux).
pub fn listening(pid: u32) -> BTreeSet<Listening> {
    let inodes: BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/fd: {e}"))
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let mut out = BTreeSet::new();
    for (table, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
    ] {
        let path = format!("/proc/{pid}/net/{table}");
        // A kernel without IPv6 has no tcp6/udp6 table.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let Ok(inode) = cols[9].parse::<u64>() else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let (Some(local), Some(remote)) = (parse_addr(cols[1]), parse_addr(cols[2])) else {
                panic!("{path}: cannot read the addresses of {line:?}");
            };
            let listens = match proto {
                Proto::Tcp => cols[3] == "0A",
                Proto::Udp => remote.ip().is_unspecified() && remote.port() == 0,
            };
            if listens {
                out.insert(Listening { proto, addr: local });
            }
        }
    }
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6).
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // Each 32-bit word is printed as the machine reads it (these tests run
    // on little-endian x86-64), so its bytes in address order are the
    // word's little-endian bytes.
    let word = |w: &str| u32::from_str_radix(w, 16).ok().map(u32::to_le_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_table_addresses_parse() {
        // Examples from proc_net_tcp.rst and a live udp6 table.
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0200007F:0050"),
            Some("127.0.0.2:80".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:1F90"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000000000000:0000"),
            Some("[::]:0".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000200007F:0016"),
            Some("127.0.0.2:22".parse().unwrap())
        );
    }

    #[test]
    fn a_socket_this_process_binds_is_found_and_a_connected_one_is_not() {
        let tcp = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.4:0").unwrap();
        let connected = std::net::UdpSocket::bind("127.0.0.5:0").unwrap();
        connected.connect(udp.local_addr().unwrap()).unwrap();
        let found = listening(std::process::id());
        assert!(
            found.contains(&Listening {
                proto: Proto::Tcp,
                addr: tcp.local_addr().unwrap()
            }),
            "{found:?}"
        );
        assert!(
            found.contains(&Listening {
                proto: Proto::Udp,
                addr: udp.local_addr().unwrap()
            }),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|l| l.addr == connected.local_addr().unwrap()),
            "{found:?}"
        );
    }
}
