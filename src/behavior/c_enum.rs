//! `c_enum!`: a Rust enum over one of libmemcached's C enums ([`Hash`](super::Hash),
//! [`Distribution`](super::Distribution)), from one table.

/// Generates from one table of rows `Variant = "pylibmc name", MEMCACHED_CONSTANT;` (each with
/// its doc): the enum; `$list`, every `(name, variant)` in row order; `to_raw`, `from_raw` and
/// `name`; `find` (by name in any case, or by number) and `unknown` for `FromStr`; and
/// `Display` as the name.
macro_rules! c_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident($raw:ty) in $list:ident as $what:literal {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident = $name:literal, $c:ident;
            )+
        }
        $(#[$name_doc:meta])*
        fn name;
    ) => {
        $(#[$meta])*
        pub enum $enum {
            $(
                $(#[doc = $doc])*
                $variant,
            )+
        }

        const $list: &[(&str, $enum)] = &[$(($name, $enum::$variant),)+];

        impl $enum {
            /// libmemcached's value.
            pub(crate) fn to_raw(self) -> $raw {
                match self {
                    $(Self::$variant => sys::$c,)+
                }
            }

            /// The variant whose libmemcached value is `raw`, if there is one.
            pub(super) fn from_raw(raw: u64) -> Option<$enum> {
                $list
                    .iter()
                    .map(|&(_, v)| v)
                    .find(|v| u64::from(v.to_raw()) == raw)
            }

            $(#[$name_doc])*
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The variant called `name` (in any case), or else numbered `number`.
            fn find(name: &str, number: &str) -> Option<$enum> {
                $list
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|&(_, v)| v)
                    .or_else(|| number.parse().ok().and_then(Self::from_raw))
            }

            /// The error for a name that is none of these, listing them.
            fn unknown(given: &str) -> crate::error::Error {
                let names: Vec<&str> = $list.iter().map(|(n, _)| *n).collect();
                crate::error::Error::InvalidConfig(crate::error::ConfigError::Unknown {
                    what: $what,
                    name: format!("{given:?}"),
                    known: format!("known: {}", names.join(", ")),
                })
            }
        }

        impl ::std::fmt::Display for $enum {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(super) use c_enum;
