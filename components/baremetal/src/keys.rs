//! OpenSSH public keys, checked before they are written into a host's
//! `authorized_keys`: a key that smuggled a newline or an option in would
//! authorise more than the grant.

/// Key types accepted for workload logins and host keys.
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `type base64` of an OpenSSH public key line (the comment dropped), if
/// the line is one: a known type whose base64 blob decodes and names the
/// same type.
pub fn parse_public_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.contains(['\n', '\r', '\0']) {
        return None;
    }
    let mut parts = line.split_ascii_whitespace();
    let kind = parts.next()?;
    let blob = parts.next()?;
    if !TYPES.contains(&kind) {
        return None;
    }
    let bytes = base64_decode(blob)?;
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if bytes.get(4..4 + len)? != kind.as_bytes() {
        return None;
    }
    Some(format!("{kind} {blob}"))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn a_real_key_passes_without_its_comment() {
        assert_eq!(
            parse_public_key(&format!("{KEY} alice@laptop")).as_deref(),
            Some(KEY)
        );
    }

    #[test]
    fn smuggled_options_and_lines_are_refused() {
        for bad in [
            format!("command=\"sh\" {KEY}"),
            format!("{KEY}\nssh-ed25519 AAAA"),
            "ssh-ed25519 AAAA$(reboot)".to_string(),
            KEY.replace("ssh-ed25519 ", "ssh-rsa "),
            "ssh-ed25519".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_public_key(&bad), None, "{bad:?}");
        }
    }
}
