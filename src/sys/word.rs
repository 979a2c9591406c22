//! Enums whose values are words in our files and output (`promote`,
//! `rolled-back`, `ready`): each is spelled once, by strum's derives on the
//! enum (`AsRefStr`/`IntoStaticStr` to write it, `EnumString` to read it),
//! and serde goes through that same spelling instead of a second one.

/// Serialize and deserialize each type as its strum word. A word the type
/// does not know is refused the way serde's derive refuses an unknown
/// variant (types that keep any text, with `#[strum(default)]`, never are).
macro_rules! serde_as_word {
    ($($t:ty),+ $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(AsRef::<str>::as_ref(self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <String as serde::Deserialize>::deserialize(d)?;
                word.parse().map_err(|_| {
                    <D::Error as serde::de::Error>::unknown_variant(
                        &word,
                        <$t as strum::VariantNames>::VARIANTS,
                    )
                })
            }
        }
    )+};
}

pub(crate) use serde_as_word;

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, PartialEq, strum::AsRefStr, strum::EnumString, strum::VariantNames)]
    #[strum(serialize_all = "kebab-case")]
    enum Closed {
        RolledBack,
        Ok,
    }

    #[derive(Debug, Clone, PartialEq, strum::AsRefStr, strum::EnumString, strum::VariantNames)]
    #[strum(serialize_all = "kebab-case")]
    enum Open {
        RolledBack,
        #[strum(default, transparent)]
        Other(String),
    }

    serde_as_word!(Closed, Open);

    #[test]
    fn words_go_through_the_strum_spelling() {
        assert_eq!(
            serde_json::to_string(&Closed::RolledBack).unwrap(),
            "\"rolled-back\""
        );
        assert_eq!(
            serde_json::from_str::<Closed>("\"ok\"").unwrap(),
            Closed::Ok
        );
        let err = serde_json::from_str::<Closed>("\"rolled_back\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown variant `rolled_back`, expected `rolled-back` or `ok`"
        );
        assert_eq!(
            serde_json::from_str::<Open>("\"rolled_back\"").unwrap(),
            Open::Other("rolled_back".into())
        );
        assert_eq!(
            serde_json::to_string(&Open::Other("x y".into())).unwrap(),
            "\"x y\""
        );
        assert_eq!(
            serde_json::from_str::<Open>("\"rolled-back\"").unwrap(),
            Open::RolledBack
        );
    }
}
