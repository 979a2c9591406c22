//! No decisions on text: outside the places that read text from outside
//! (the SSH command, push options, `/proc`, deploy.toml paths), `src/`
//! never compares a value with a string literal (`state == "none"`,
//! `stage != "stop"`). States are enums; a comparison on their spelling
//! passes the compiler whatever the spelling becomes, and silently goes
//! false when it changes.
//!
//! The rule looks at `==` and `!=` with a string literal on either side
//! (through `&`, parentheses and `Some(..)`, and inside macro arguments that parse as
//! expressions), in everything but `#[cfg(test)]` modules and `#[test]`
//! functions. `match` arms and `matches!` patterns on literals are not
//! looked at: they are how input is parsed. The allow-list names each
//! remaining comparison by file and literal, with why; an entry that no
//! longer matches anything fails too, so the list only shrinks.

use std::collections::BTreeSet;
use std::path::Path;

use syn::spanned::Spanned;
use syn::visit::Visit;

/// (file, literals, why): comparisons on text that stays text.
const ALLOWED: Allowed = &[
    (
        "src/access/shell.rs",
        &[
            "git",
            "receive-pack",
            "upload-pack",
            "git-receive-pack",
            "--root",
            "~",
            "repository",
        ],
        "the SSH command line and the paths the client sent",
    ),
    (
        "src/access/keys.rs",
        &["shell"],
        "an authorized_keys command= line",
    ),
    (
        "src/access/mod.rs",
        &["promote", "unsigned", "tag"],
        "push options; git's object type word",
    ),
    (
        "src/hook/mod.rs",
        &["promote", "unsigned"],
        "push options, as git hands them on",
    ),
    ("src/sys/color.rs", &["dumb"], "the TERM variable"),
    (
        "src/state/watch.rs",
        &["Z", "X"],
        "a process state letter in /proc/PID/stat",
    ),
    (
        "src/state/root.rs",
        &["repository"],
        "a directory name on disk",
    ),
    (
        "src/state/reflocks.rs",
        &["packed-refs.lock"],
        "a file name in git's directory",
    ),
    (
        "src/state/config.rs",
        &["REVISION"],
        "a path written in deploy.toml",
    ),
    (
        "src/housekeeping/report.rs",
        &["total", "flip"],
        "durations keys, as read from a journal line",
    ),
];

type Allowed<'a> = &'a [(&'a str, &'a [&'a str], &'a str)];

/// One comparison with a string literal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    /// Relative to the directory holding `src/`.
    file: String,
    line: usize,
    literal: String,
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: compared with \"{}\"",
            self.file, self.line, self.literal
        )
    }
}

struct Finder<'a> {
    file: &'a str,
    hits: Vec<Hit>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

/// The string literal `e` is, through `&`, parentheses, groups and `Some`.
fn literal(e: &syn::Expr) -> Option<&syn::LitStr> {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s),
        syn::Expr::Reference(r) => literal(&r.expr),
        syn::Expr::Paren(p) => literal(&p.expr),
        syn::Expr::Group(g) => literal(&g.expr),
        syn::Expr::Call(c)
            if c.args.len() == 1
                && matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("Some")) =>
        {
            literal(&c.args[0])
        }
        _ => None,
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if matches!(e.op, syn::BinOp::Eq(_) | syn::BinOp::Ne(_)) {
            if let Some(lit) = literal(&e.left).or_else(|| literal(&e.right)) {
                self.hits.push(Hit {
                    file: self.file.to_string(),
                    line: e.op.span().start().line,
                    literal: lit.value(),
                });
            }
        }
        syn::visit::visit_expr_binary(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // `assert!(a == "x")`, `debug_assert!`, `format!("{}", a == "x")`.
        type Args = syn::punctuated::Punctuated<syn::Expr, syn::Token![,]>;
        if let Ok(args) = mac.parse_body_with(Args::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

/// The `.rs` files below `dir`.
fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("could not list {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            rs_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every comparison with a string literal below `dir/src`, in file order.
fn comparisons(dir: &Path) -> Result<Vec<Hit>, String> {
    let mut files = Vec::new();
    rs_files(&dir.join("src"), &mut files)?;
    files.sort();
    let mut hits = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        let ast = syn::parse_file(&text)
            .map_err(|e| format!("could not parse {}: {e}", path.display()))?;
        let rel = path
            .strip_prefix(dir)
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut finder = Finder {
            file: &rel,
            hits: Vec::new(),
        };
        finder.visit_file(&ast);
        hits.extend(finder.hits);
    }
    Ok(hits)
}

/// The comparisons `allowed` does not name, and the (file, literal) pairs
/// of `allowed` that name none.
fn violations<'a>(hits: &[Hit], allowed: Allowed<'a>) -> (Vec<Hit>, Vec<(&'a str, &'a str)>) {
    let pairs: Vec<(&str, &str)> = allowed
        .iter()
        .flat_map(|(f, ls, _)| ls.iter().map(move |l| (*f, *l)))
        .collect();
    let found: BTreeSet<(&str, &str)> = hits
        .iter()
        .map(|h| (h.file.as_str(), h.literal.as_str()))
        .collect();
    let bad = hits
        .iter()
        .filter(|h| !pairs.contains(&(h.file.as_str(), h.literal.as_str())))
        .cloned()
        .collect();
    let stale = pairs.into_iter().filter(|e| !found.contains(e)).collect();
    (bad, stale)
}

#[test]
fn src_decides_nothing_on_text() {
    let hits = comparisons(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{e}"));
    // Guards the rule from passing on a tree it could not see.
    assert!(hits.len() >= ALLOWED.len(), "{hits:?}");
    let (bad, stale) = violations(&hits, ALLOWED);
    let bad: Vec<String> = bad.iter().map(Hit::to_string).collect();
    assert!(
        bad.is_empty(),
        "src/ compares values with string literals; make the value an enum (strum spells it once), \
         or, where the text comes from outside, add it to ALLOWED in {} with why:\n{}",
        file!(),
        bad.join("\n")
    );
    assert!(
        stale.is_empty(),
        "ALLOWED names comparisons that are gone; remove them: {stale:?}"
    );
}

#[test]
fn the_rule_catches_a_planted_comparison_and_spares_tests_and_the_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("deploy")).expect("mkdir");
    std::fs::write(
        src.join("deploy/switch.rs"),
        r#"
pub fn advice(stage: &str, state: &String) -> bool {
    let quiet = (&*state) != ("none");
    debug_assert!(stage == "x" || quiet);
    if "stop" == stage { return true; }
    if state.get(..1) != Some("r") { return false; }
    matches!(stage, "start")
}

#[cfg(test)]
mod tests {
    #[test]
    fn t() { assert!(super::advice("stop", &String::new()) == true && "a" == "a"); }
}

#[test]
fn loose() { assert!("b" != "c"); }
"#,
    )
    .expect("write");
    std::fs::write(
        src.join("lib.rs"),
        "pub mod deploy;\npub fn term(t: &str) -> bool { t != \"dumb\" }\n",
    )
    .expect("write");
    let hits = comparisons(dir.path()).expect("parses");
    let allowed: Allowed = &[("src/lib.rs", &["dumb", "gone"], "the TERM variable")];
    let (bad, stale) = violations(&hits, allowed);
    let bad: Vec<String> = bad.iter().map(Hit::to_string).collect();
    assert_eq!(
        bad,
        [
            "src/deploy/switch.rs:3: compared with \"none\"",
            "src/deploy/switch.rs:4: compared with \"x\"",
            "src/deploy/switch.rs:5: compared with \"stop\"",
            "src/deploy/switch.rs:6: compared with \"r\"",
        ]
    );
    assert_eq!(stale, [("src/lib.rs", "gone")]);
}
