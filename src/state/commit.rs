//! The commit a release is built from, as one type from the hook to the
//! journal: what git accepted, already checked to be a full object id.
//!
//! A release, its record and its journal lines all name the commit by its
//! full lowercase hex, so that is what this carries alongside the gix id:
//! `as_str` and `short` cost nothing, and nobody re-spells it with
//! `to_string()` at every step.

use std::fmt;
use std::str::FromStr;

use gix::ObjectId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Hex digits of a full SHA-1 id: the only kind this build of gix reads.
const HEX_LEN: usize = 40;

/// A full commit id (SHA-1). `Display` is the full lowercase hex, as the
/// release directory, its record and the journal spell it; serde reads and
/// writes that same plain string, so files do not change.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Commit {
    id: ObjectId,
    hex: [u8; HEX_LEN],
}

impl Commit {
    /// Parse a full 40-digit hex id (either case; kept lowercase).
    pub(crate) fn parse(text: &str) -> Result<Commit> {
        let bad = |why: &str| {
            Error::with_help(
                format!("`{text}` is not a commit id: {why}"),
                "give the full 40-character hex id (e.g. from `git rev-parse HEAD`), or a ref that the repository resolves",
            )
        };
        if text.len() != HEX_LEN {
            return Err(bad(&format!(
                "it has {} characters, a full id has {HEX_LEN}",
                text.len()
            )));
        }
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("it holds characters other than 0-9 and a-f"));
        }
        ObjectId::from_hex(text.as_bytes())
            .map(Commit::from)
            .map_err(|e| bad(&e.to_string()))
    }

    /// Read a name as symdeploy stores it (a release directory, a record,
    /// a journal field, a symlink target): exactly 40 lowercase hex digits.
    /// Anything else is `None`, so that an odd value on disk is never taken
    /// for, or mapped onto, another release.
    pub(crate) fn parse_stored(text: &str) -> Option<Commit> {
        let lower = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != HEX_LEN || !text.bytes().all(lower) {
            return None;
        }
        ObjectId::from_hex(text.as_bytes()).ok().map(Commit::from)
    }

    /// The gix id, for reading the commit from the repository.
    pub(crate) fn id(&self) -> ObjectId {
        self.id
    }

    /// The full lowercase hex id.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (see `From<ObjectId>`).
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }

    /// The short form used in messages: the first 12 hex digits.
    pub(crate) fn short(&self) -> &str {
        self.as_str().get(..12).unwrap_or_default()
    }
}

impl From<ObjectId> for Commit {
    fn from(id: ObjectId) -> Commit {
        let mut hex = [b'0'; HEX_LEN];
        // gix is built with SHA-1 only, so this is always 40 lowercase digits.
        for (d, s) in hex.iter_mut().zip(id.to_hex().to_string().bytes()) {
            *d = s;
        }
        Commit { id, hex }
    }
}

impl From<Commit> for ObjectId {
    fn from(c: Commit) -> ObjectId {
        c.id
    }
}

impl FromStr for Commit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Commit> {
        Commit::parse(s)
    }
}

impl AsRef<str> for Commit {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Commit {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Commit {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Commit {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commit({})", self.as_str())
    }
}

impl Serialize for Commit {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Commit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Commit, D::Error> {
        let text = String::deserialize(d)?;
        Commit::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "28e39315124123e4641cbfb9b4a960d356d3d611";

    #[test]
    fn full_hex_short_form_and_gix_id_agree() {
        let c = Commit::parse(HEX).unwrap();
        assert_eq!(c.to_string(), HEX);
        assert_eq!(c.as_str(), HEX);
        assert_eq!(c.short(), "28e393151241");
        assert_eq!(c.short(), &HEX[..12]);
        let id = ObjectId::from_hex(HEX.as_bytes()).unwrap();
        assert_eq!(Commit::from(id), c);
        assert_eq!(c.id(), id);
        assert_eq!(Commit::parse(&HEX.to_uppercase()).unwrap().as_str(), HEX);
    }

    #[test]
    fn serde_is_the_plain_hex_string() {
        let c = Commit::parse(HEX).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{HEX}\""));
        assert_eq!(serde_json::from_str::<Commit>(&json).unwrap(), c);
        assert_eq!(
            serde_json::to_string(&Some(c)).unwrap(),
            serde_json::to_string(&Some(HEX)).unwrap()
        );
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        let short = Commit::parse("28e3931512").unwrap_err().to_string();
        assert!(short.contains("10 characters"), "{short}");
        let odd = Commit::parse(&HEX.replace('e', "g"))
            .unwrap_err()
            .to_string();
        assert!(odd.contains("0-9 and a-f"), "{odd}");
        assert!(serde_json::from_str::<Commit>("\"main\"").is_err());
    }
}
