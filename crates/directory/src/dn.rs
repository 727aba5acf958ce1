//! Distinguished names compared the way directories compare them. The same DN comes back
//! spelled differently from one server, one attribute or one administrator to the next:
//! `CN=` or `cn=` or `2.5.4.3=`, `\,` or `\2C` or `\2c` for an escaped comma, `é` or
//! `\C3\A9`, spaces around `,`, `+` and `=`, the values of a multi-valued RDN in any order.
//! [`normalize_dn`] parses a DN per RFC 4514 and writes one canonical string, so that two
//! spellings of one DN compare equal as strings (group mappings, `member` and `memberOf`
//! values, entry DNs). Pure: no IO.

/// Attribute types that have a short name, by their OID (RFC 4519), so that `2.5.4.3=x`
/// and `cn=x` normalise alike.
const KNOWN_OIDS: &[(&str, &str)] = &[
    ("2.5.4.3", "cn"),
    ("2.5.4.6", "c"),
    ("2.5.4.7", "l"),
    ("2.5.4.8", "st"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "o"),
    ("2.5.4.11", "ou"),
    ("0.9.2342.19200300.100.1.1", "uid"),
    ("0.9.2342.19200300.100.1.25", "dc"),
];

/// A DN in a canonical form: attribute types lowercased (OIDs of well-known types replaced
/// by their names), values unescaped then compared as the naming attributes of users and
/// groups compare (case-insensitively, with leading, trailing and repeated spaces
/// insignificant, RFC 4518), the AVAs of a multi-valued RDN sorted, and every special
/// character written as the same `\XX` escape. A string that is not a DN (no `=` in an
/// RDN, a dangling `\`) is lowercased with its spaces collapsed, so it still compares
/// equal to itself.
pub fn normalize_dn(dn: &str) -> String {
    match parse(dn) {
        Some(rdns) => rdns
            .into_iter()
            .map(|mut avas| {
                avas.sort();
                avas.into_iter()
                    .map(|(t, v)| format!("{t}={}", escape(&v)))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(","),
        None => dn
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    }
}

/// RDNs of (type, normalised value), or `None` when `dn` is not a DN.
fn parse(dn: &str) -> Option<Vec<Vec<(String, String)>>> {
    let b = dn.as_bytes();
    let mut i = 0;
    let mut rdns = Vec::new();
    let mut avas = Vec::new();
    if dn.trim().is_empty() {
        return Some(rdns);
    }
    loop {
        // attribute type
        let start = i;
        while i < b.len() && b[i] != b'=' {
            if matches!(b[i], b',' | b';' | b'+' | b'\\') {
                return None;
            }
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        let mut t = dn[start..i].trim().to_ascii_lowercase();
        if t.is_empty() {
            return None;
        }
        if let Some(oid) = t.strip_prefix("oid.") {
            t = oid.to_string();
        }
        if let Some((_, name)) = KNOWN_OIDS.iter().find(|(oid, _)| *oid == t) {
            t = name.to_string();
        }
        i += 1; // '='
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        // value
        let mut raw: Vec<u8> = Vec::new();
        if i < b.len() && b[i] == b'#' {
            // BER-encoded value: compared as its hex string.
            let s = i;
            i += 1;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            raw.extend(dn[s..i].to_ascii_lowercase().bytes());
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        } else if i < b.len() && b[i] == b'"' {
            // RFC 2253's quoted form, still written by some tools.
            i += 1;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        let (byte, n) = unescape(b, i)?;
                        raw.push(byte);
                        i += n;
                    }
                    &c => {
                        raw.push(c);
                        i += 1;
                    }
                }
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        } else {
            while i < b.len() && !matches!(b[i], b',' | b';' | b'+') {
                if b[i] == b'\\' {
                    let (byte, n) = unescape(b, i)?;
                    raw.push(byte);
                    i += n;
                } else {
                    raw.push(b[i]);
                    i += 1;
                }
            }
        }
        let value = String::from_utf8_lossy(&raw);
        let value = value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        avas.push((t, value));
        match b.get(i) {
            None => {
                rdns.push(avas);
                return Some(rdns);
            }
            Some(b'+') => {}
            Some(_) => rdns.push(std::mem::take(&mut avas)),
        }
        i += 1;
    }
}

/// The byte an escape at `b[i]` (a `\`) stands for, and the length of the escape.
fn unescape(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let hex = |c: u8| (c as char).to_digit(16);
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
            Some(((hex(h)? * 16 + hex(l)?) as u8, 3))
        }
        (Some(&c), _) => Some((c, 2)),
        (None, _) => None,
    }
}

/// One escape for every character that needs one (RFC 4514 2.4), always as `\XX`.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (n, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || c.is_control()
            || (n == 0 && c == '#')
        {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{byte:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 14: a mapping written with `\,` matched nothing when the server returned
    /// `\2C`. Each row lists spellings of one DN that must normalise alike.
    #[test]
    fn spellings_of_one_dn_normalise_alike() {
        let same: &[&[&str]] = &[
            &[
                "CN=Registry Admins,CN=Users,DC=corp",
                "cn=registry admins, cn=users , dc=corp",
                "cn = Registry  Admins,cn=Users,dc=CORP",
                "2.5.4.3=Registry Admins,CN=Users,0.9.2342.19200300.100.1.25=corp",
                "OID.2.5.4.3=registry admins,cn=users,dc=corp",
                "cn=Registry\\20Admins,cn=Users,dc=corp",
            ],
            &[
                "cn=Smith\\, John,ou=people,dc=example",
                "cn=Smith\\2C John,ou=people,dc=example",
                "CN=smith\\2c john,OU=People,DC=Example",
                "cn=\"Smith, John\",ou=people,dc=example",
                "cn=Smith\\,\\20John,ou=people;dc=example",
            ],
            &[
                "cn=José,dc=x",
                "cn=Jos\\C3\\A9,dc=x",
                "CN=JOSÉ,DC=X",
                "cn=jos\\c3\\a9,dc=x",
            ],
            &["cn=a+uid=b,dc=x", "uid=b+cn=a,dc=x", "UID=B + CN=A, DC=X"],
            &["cn=a\\+b,dc=x", "cn=a\\2Bb,dc=x"],
            &["cn=\\#1,dc=x", "cn=\\231,dc=x"],
            &["cn=x\\;y,dc=x", "cn=x\\3By,dc=x"],
            &["uid=#04024869,dc=x", "UID=#04024869 ,dc=x"],
            &["", "  "],
        ];
        for spellings in same {
            let want = normalize_dn(spellings[0]);
            for s in *spellings {
                assert_eq!(normalize_dn(s), want, "{s:?} vs {:?}", spellings[0]);
            }
        }
        let different: &[(&str, &str)] = &[
            ("cn=a\\,b,dc=x", "cn=a,cn=b,dc=x"),
            ("cn=a\\+b,dc=x", "cn=a+cn=b,dc=x"),
            ("cn=a,dc=x", "cn=a,dc=y"),
            ("cn=a,dc=x", "uid=a,dc=x"),
            ("cn=registry-developers,dc=x", "cn=registry developers,dc=x"),
        ];
        for (a, b) in different {
            assert_ne!(normalize_dn(a), normalize_dn(b), "{a:?} = {b:?}");
        }
    }

    #[test]
    fn canonical_form() {
        let cases = [
            (
                "CN=Smith\\2C John, OU=People",
                "cn=smith\\2c john,ou=people",
            ),
            ("cn = a , dc=x", "cn=a,dc=x"),
            ("UID=B+CN=A", "cn=a+uid=b"),
            // Not DNs: kept comparable with themselves.
            ("registry-developers", "registry-developers"),
            ("cn=a\\", "cn=a\\"),
            ("A  B", "a b"),
        ];
        for (dn, want) in cases {
            assert_eq!(normalize_dn(dn), want, "{dn:?}");
        }
    }
}
