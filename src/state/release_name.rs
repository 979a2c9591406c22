//! The name a release goes by in records, manifests, the journal and the
//! trash: a main release is named by its commit, a preview's release by
//! `preview-<slug>-<commit>`, so that no listing of main releases can take a
//! preview's for one of its own.
//!
//! Parsed once where a name comes in (a directory listing, a record, a
//! journal line, the command line) and carried as this type from there on:
//! nothing downstream has to guess whether a string is a hash or a name, and
//! messages never shorten a preview's name as if it were a hash.

use std::fmt;

use crate::state::commit::Commit;

/// Prefix of a preview's release name.
pub(crate) const PREVIEW_PREFIX: &str = "preview-";

/// Which release: a main one (`releases/<commit>`) or a preview's
/// (`previews/<slug>/releases/<commit>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ReleaseName {
    /// A release of the main line, named by its commit.
    Main(Commit),
    /// A preview branch's release.
    Preview {
        /// The preview's slug: a DNS label, checked when parsed.
        slug: String,
        /// The commit it was built from.
        commit: Commit,
    },
}

impl ReleaseName {
    /// A preview's release; `None` unless `slug` is a DNS label (lowercase
    /// letters, digits, `-`), so that nothing in it can climb out of
    /// `previews/`.
    pub(crate) fn preview(slug: &str, commit: Commit) -> Option<ReleaseName> {
        is_slug(slug).then(|| ReleaseName::Preview {
            slug: slug.to_string(),
            commit,
        })
    }

    /// Read a stored name: 40 lowercase hex digits, or
    /// `preview-<slug>-<40 lowercase hex>`. Anything else (an older
    /// version's odd value, a hand-made file) is `None`: read, never acted on.
    pub(crate) fn parse(name: &str) -> Option<ReleaseName> {
        if let Some(c) = Commit::parse_stored(name) {
            return Some(ReleaseName::Main(c));
        }
        let rest = name.strip_prefix(PREVIEW_PREFIX)?;
        let (slug, commit) = rest.rsplit_once('-')?;
        ReleaseName::preview(slug, Commit::parse_stored(commit)?)
    }

    /// The commit the release was built from.
    pub(crate) fn commit(&self) -> Commit {
        match self {
            ReleaseName::Main(c) | ReleaseName::Preview { commit: c, .. } => *c,
        }
    }

    /// The preview's slug, for a preview's release.
    pub(crate) fn slug(&self) -> Option<&str> {
        match self {
            ReleaseName::Main(_) => None,
            ReleaseName::Preview { slug, .. } => Some(slug),
        }
    }

    /// The main release's commit; `None` for a preview's release.
    pub(crate) fn main(&self) -> Option<Commit> {
        match self {
            ReleaseName::Main(c) => Some(*c),
            ReleaseName::Preview { .. } => None,
        }
    }

    /// The name as people read it: a main release's commit shortened, a
    /// preview's name whole (its first 12 characters would say nothing).
    pub(crate) fn label(&self) -> String {
        match self {
            ReleaseName::Main(c) => c.short().to_string(),
            ReleaseName::Preview { .. } => self.to_string(),
        }
    }

    /// Where the release is, as people read it: `releases/<short>`, or
    /// `previews/<slug>/releases/<short>`.
    pub(crate) fn place(&self) -> String {
        match self {
            ReleaseName::Main(c) => format!("releases/{}", c.short()),
            ReleaseName::Preview { slug, commit } => {
                format!("previews/{slug}/releases/{}", commit.short())
            }
        }
    }
}

impl From<Commit> for ReleaseName {
    fn from(c: Commit) -> ReleaseName {
        ReleaseName::Main(c)
    }
}

/// The stored form: what records, manifests and the journal are named by.
impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseName::Main(c) => f.pad(c.as_str()),
            ReleaseName::Preview { slug, commit } => {
                f.pad(&format!("{PREVIEW_PREFIX}{slug}-{commit}"))
            }
        }
    }
}

/// Written as its stored form (`--json` output).
impl serde::Serialize for ReleaseName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A release's name as a file recorded it (a journal line, `production.json`):
/// parsed when it names a release, kept as text when it does not (a value an
/// older version or a hand edit left), so that such a line is still read and
/// shown but never acted on. Written back byte for byte as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Recorded {
    /// A release name symdeploy can act on.
    Release(ReleaseName),
    /// Anything else, as it was written.
    Unknown(String),
}

impl Recorded {
    /// The release it names, if it names one.
    pub(crate) fn release(&self) -> Option<&ReleaseName> {
        match self {
            Recorded::Release(n) => Some(n),
            Recorded::Unknown(_) => None,
        }
    }

    /// The main release's commit it names, if it names one.
    pub(crate) fn main(&self) -> Option<Commit> {
        self.release().and_then(ReleaseName::main)
    }

    /// The name as people read it (see [`ReleaseName::label`]); an unknown
    /// value whole.
    pub(crate) fn label(&self) -> String {
        match self {
            Recorded::Release(n) => n.label(),
            Recorded::Unknown(s) => s.clone(),
        }
    }
}

impl From<ReleaseName> for Recorded {
    fn from(n: ReleaseName) -> Recorded {
        Recorded::Release(n)
    }
}

impl From<Commit> for Recorded {
    fn from(c: Commit) -> Recorded {
        Recorded::Release(ReleaseName::Main(c))
    }
}

impl From<&str> for Recorded {
    fn from(s: &str) -> Recorded {
        ReleaseName::parse(s).map_or_else(|| Recorded::Unknown(s.to_string()), Recorded::Release)
    }
}

impl PartialEq<Commit> for Recorded {
    fn eq(&self, c: &Commit) -> bool {
        self.main() == Some(*c)
    }
}

impl PartialEq<ReleaseName> for Recorded {
    fn eq(&self, n: &ReleaseName) -> bool {
        self.release() == Some(n)
    }
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recorded::Release(n) => n.fmt(f),
            Recorded::Unknown(s) => f.pad(s),
        }
    }
}

impl serde::Serialize for Recorded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Recorded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Recorded, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Ok(Recorded::from(text.as_str()))
    }
}

/// A preview slug: a non-empty DNS label.
pub(crate) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn names_round_trip_through_their_stored_form() {
        let c = Commit::parse(HEX).unwrap();
        let main = ReleaseName::parse(HEX).unwrap();
        assert_eq!(main, ReleaseName::Main(c));
        assert_eq!(main.to_string(), HEX);
        assert_eq!(main.label(), "0123456789ab");
        assert_eq!(main.place(), "releases/0123456789ab");

        let stored = format!("preview-feature-a-b-{HEX}");
        let p = ReleaseName::parse(&stored).unwrap();
        assert_eq!(p.slug(), Some("feature-a-b"));
        assert_eq!(p.commit(), c);
        assert_eq!(p.main(), None);
        assert_eq!(p.to_string(), stored);
        assert_eq!(p.label(), stored, "a preview's name is never cut");
        assert_eq!(p.place(), "previews/feature-a-b/releases/0123456789ab");
    }

    #[test]
    fn recorded_names_keep_odd_values_as_written() {
        for text in [
            HEX.to_string(),
            format!("preview-x-{HEX}"),
            "c1".into(),
            "../x".into(),
        ] {
            let json = serde_json::to_string(&text).unwrap();
            let r: Recorded = serde_json::from_str(&json).unwrap();
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                json,
                "written back as read"
            );
            assert_eq!(r.release().is_some(), text.len() > 2 && text != "../x");
        }
        let odd: Recorded = serde_json::from_str("\"c1\"").unwrap();
        assert_eq!(odd, Recorded::Unknown("c1".into()));
        assert_eq!(odd.main(), None, "never acted on");
        assert!(serde_json::from_str::<Recorded>("1").is_err());
    }

    #[test]
    fn odd_names_are_not_releases() {
        for odd in [
            "",
            "c1",
            &HEX.to_uppercase(),
            &format!("{HEX}0"),
            "preview--x",
            &format!("preview-{HEX}"),
            &format!("preview--{HEX}"),
            &format!("preview-../../etc-{HEX}"),
            &format!("preview-Feat-{HEX}"),
            &format!(".tmp-{HEX}"),
        ] {
            assert_eq!(ReleaseName::parse(odd), None, "{odd:?}");
        }
    }
}
