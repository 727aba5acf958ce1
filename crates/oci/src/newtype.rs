//! The trait impls every validated string newtype of the workspace shares (`RepoName`,
//! `Tag`, auth's `ScopeName` and `SecretId`, ...), written once as macros so that each
//! type states only what differs: its name and how it is parsed.

/// `Display` (the text itself) and `Debug` (`Name(text)`) for a newtype `Name(String)`.
#[macro_export]
macro_rules! text_newtype {
    ($name:ident) => {
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

/// `TryFrom<String>` (through `parse(&str) -> Result<Name, Error>`) and `From<Name> for
/// String` (through `show(&Name)`), the pair serde's `#[serde(try_from = "String", into =
/// "String")]` reads and writes a validated type with.
#[macro_export]
macro_rules! string_form {
    ($name:ident, $err:ty, $parse:path, $show:path) => {
        impl ::std::convert::TryFrom<String> for $name {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                ::std::string::ToString::to_string(&$show(&v))
            }
        }
    };
}
