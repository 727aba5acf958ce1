//! From a directory login name to a Berth account name. Berth has one name rule
//! ([`berth_oci::is_valid_account_name`]: lowercase ASCII letters and digits separated by
//! single `.`, `_` or `-`, at most 64 bytes), because an account name is a repository
//! namespace. Directory names need not fit it (`Jane Doe`, `José`, `o'brien`), and an
//! account the API cannot name is an account nobody can manage, so every directory name is
//! mapped, by [`account_name_for`], before it becomes an account:
//!
//! 1. lowercased, then decomposed (Unicode NFKD) with combining marks dropped, so `José`
//!    becomes `jose` and `Müller` `muller`; a few letters that do not decompose are
//!    spelled out (`ß` `ss`, `æ` `ae`, `œ` `oe`, `ø` `o`, `ł` `l`, `đ` and `ð` `d`, `þ`
//!    `th`, `ı` `i`);
//! 2. every run of other characters (spaces, `'`, `@`, letters of other scripts, repeated
//!    separators) becomes one `.`, except a lone `_` or `-`, which is kept; leading and
//!    trailing runs are dropped, so `Jane Doe` becomes `jane.doe` and `o'brien` `o.brien`;
//! 3. cut to 64 bytes (and any separator left at the end dropped).
//!
//! A name with no ASCII letter or digit left (`李雷`) has no account name: such a user
//! gets no account, and the sync says so. Two directory users whose names map to the same
//! account name are a conflict: the first (by directory order) keeps it, the sync warns
//! about the other. Pure: no IO.

use berth_oci::name::MAX_ACCOUNT_NAME_LEN;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The Berth account name of a directory user named `directory_name`, or `None` when
/// nothing of it fits the name rule. Names that already fit map to themselves.
pub fn account_name_for(directory_name: &str) -> Option<String> {
    let lower = directory_name.to_lowercase();
    let mut ascii = String::with_capacity(lower.len());
    for c in lower.nfkd().filter(|c| !is_combining_mark(*c)) {
        match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => ascii.push(c),
            'ß' => ascii.push_str("ss"),
            'æ' => ascii.push_str("ae"),
            'œ' => ascii.push_str("oe"),
            'ø' => ascii.push('o'),
            'ł' => ascii.push('l'),
            'đ' | 'ð' => ascii.push('d'),
            'þ' => ascii.push_str("th"),
            'ı' => ascii.push('i'),
            // Anything else separates.
            _ => ascii.push(' '),
        }
    }
    let mut out = String::with_capacity(ascii.len());
    let mut run = String::new();
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if !run.is_empty() && !out.is_empty() {
                out.push(match run.as_str() {
                    "_" | "-" => run.chars().next().unwrap_or('.'),
                    _ => '.',
                });
            }
            run.clear();
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if out.len() > MAX_ACCOUNT_NAME_LEN {
        out.truncate(MAX_ACCOUNT_NAME_LEN);
        while out.ends_with(['.', '_', '-']) {
            out.pop();
        }
    }
    berth_oci::is_valid_account_name(&out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 17: directory users with names outside the rule got accounts the API could not
    /// manage. The documented mapping, row by row; every result fits the one rule.
    #[test]
    fn directory_names_map_onto_the_name_rule() {
        let long = "a".repeat(70);
        let cut = "b".repeat(63) + " c";
        let cases: &[(&str, Option<&str>)] = &[
            ("alice", Some("alice")),
            ("Alice", Some("alice")),
            ("jean-luc", Some("jean-luc")),
            ("first_last", Some("first_last")),
            ("j.doe", Some("j.doe")),
            ("Jane Doe", Some("jane.doe")),
            ("  Jane   Doe  ", Some("jane.doe")),
            ("José", Some("jose")),
            ("JOSÉ", Some("jose")),
            ("Jos\u{65}\u{301}", Some("jose")),
            ("Müller-Lüdenscheidt", Some("muller-ludenscheidt")),
            ("Strauß", Some("strauss")),
            ("Søren Ærø", Some("soren.aero")),
            ("Łukasz", Some("lukasz")),
            ("o'brien", Some("o.brien")),
            ("a--b", Some("a.b")),
            ("a__b", Some("a.b")),
            ("a - b", Some("a.b")),
            ("-x-", Some("x")),
            ("alice@corp.example.com", Some("alice.corp.example.com")),
            ("ＡＢＣ１", Some("abc1")),
            ("ﬁle", Some("file")),
            ("李雷", None),
            ("", None),
            ("...", None),
            (&long, Some(&long[..64])),
            (&cut, Some(&cut[..63])),
        ];
        for (name, want) in cases {
            let got = account_name_for(name);
            assert_eq!(got.as_deref(), *want, "{name:?}");
            if let Some(g) = &got {
                assert!(berth_oci::is_valid_account_name(g), "{name:?} -> {g:?}");
                assert_eq!(
                    account_name_for(g).as_deref(),
                    Some(g.as_str()),
                    "idempotent"
                );
            }
        }
    }
}
