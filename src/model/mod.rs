//! The public objects and their typed values, below every other layer: card data as checked types, and
//! the objects the API answers and the webhooks carry. No axum, no sqlx, no I/O.

pub mod account;
pub mod card;
pub mod import;
pub mod payment;
pub mod token;

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// An instant as the wire shows it: RFC 3339 in UTC with a `Z`, with fractional seconds only when
/// there are some (the stores keep microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

/// A stored or received string that names no value of a `string_enum!` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// The type that was read, e.g. `ImportStatus`; the unknown text itself is not kept.
    pub what: &'static str,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a known {}", self.what)
    }
}

impl std::error::Error for UnknownValue {}

/// Declares a closed set of wire strings as an enum, with its one string table (`Variant = "text"`).
/// Everything else is derived from that table: `as_str`, `FromStr`, `Display`, serde (as the string)
/// and the OpenAPI schema (a string enum, described by the enum's doc comment).
macro_rules! string_enum {
    (
        $(#[doc = $doc:literal])*
        $vis:vis enum $name:ident {
            $( $(#[doc = $vdoc:literal])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[doc = $vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in the order of the table.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire and storage spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::model::UnknownValue { what: stringify!($name) }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                let lines: &[&str] = &[$($doc),*];
                let description = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n");
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .description((!description.is_empty()).then_some(description))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    use super::card::Scheme;
    use super::import::{FailureReason, ImportProvider, ImportStatus};
    use super::token::{IdentityAndVerification, NetworkTokenStatus, TokenStatus};

    /// Every value reads back from its own spelling and serialises as exactly that string.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + std::fmt::Debug + PartialEq + serde::Serialize + std::str::FromStr,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for value in all {
            let text = as_str(*value);
            assert_eq!(text.parse::<T>().unwrap(), *value);
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::json!(text)
            );
        }
    }

    #[test]
    fn every_string_enum_round_trips_through_its_one_table() {
        round_trips(ImportStatus::ALL, ImportStatus::as_str);
        round_trips(ImportProvider::ALL, ImportProvider::as_str);
        round_trips(FailureReason::ALL, FailureReason::as_str);
        round_trips(TokenStatus::ALL, TokenStatus::as_str);
        round_trips(NetworkTokenStatus::ALL, NetworkTokenStatus::as_str);
        round_trips(
            IdentityAndVerification::ALL,
            IdentityAndVerification::as_str,
        );
        round_trips(Scheme::ALL, Scheme::as_str);
        assert!("Preparing".parse::<ImportStatus>().is_err());
    }

    #[test]
    fn the_wire_strings_are_todays() {
        let texts = |all: &[ImportStatus]| all.iter().map(|s| s.as_str()).collect::<Vec<_>>();
        assert_eq!(
            texts(ImportStatus::ALL),
            ["preparing", "running", "finished", "aborted"]
        );
        assert_eq!(ImportProvider::Stripe.as_str(), "stripe");
        assert_eq!(TokenStatus::Active.as_str(), "active");
        assert_eq!(NetworkTokenStatus::NotAvailable.as_str(), "not_available");
        assert_eq!(IdentityAndVerification::None.as_str(), "none");
    }
}
