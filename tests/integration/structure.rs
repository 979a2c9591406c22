//! The shape of `src/`, checked by parsing it: the rules the crate graph
//! cannot enforce. (That `export` and `steps` depend on nothing of ours is
//! enforced by Cargo: they are crates of the workspace without a dependency
//! on this one.) A file reaches another when it names a path into it
//! (`crate::state::journal::append`, a `use`, `super::super::error::Error`, a
//! name it imported, a path inside a macro's arguments); each path goes to the
//! deepest file of its module prefix. The layers are the top-level folders and
//! root files (`ops`, `deploy`, `state`, `error`, ...).
//!
//! 1. No circles between files.
//! 2. The layers go one way: no file reaches a layer above its own
//!    (`LAYERS`: the entry points on top, state and system at the bottom), but
//!    for the few files listed, with why, in `KNOWN_UPWARD`.
//! 3. A file in `src/ops/` never reaches another file of `src/ops/` (what two
//!    operations share lives in a layer below), and `src/ops/mod.rs` reaches
//!    nothing: it only declares the operations.
//! 4. The deep layers (`state`, `housekeeping`, `sys` but `sys/output.rs`)
//!    print nothing themselves and render no error: no print macros, no
//!    `output::error`/`output::report` (they return errors; one place renders
//!    them). Test code (`#[cfg(test)]`, `#[test]`) may print.
//!
//! Each rule is shown to catch a violation planted in a small synthetic
//! tree, so a checker that finds nothing cannot pass for a clean `src/`.
//! Known blind spots, on purpose: names reached only through a glob import's
//! re-exports, and paths in doc links or strings (neither makes the compiler
//! reach a file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The layers, top first: the entry points (commands, hooks, access), the
/// deploy machinery, and the state and system below everything. Within a
/// layer, rule 1 keeps the arrows one way.
const LAYERS: &[&[&str]] = &[
    &["lib", "cli", "hook", "ops", "access"],
    &["session", "deploy", "housekeeping"],
    &["state", "sys", "ctx", "error"],
];

/// Files a lower layer may reach although they sit in a higher one, and why.
const KNOWN_UPWARD: &[(&str, &str)] = &[
    (
        "src/hook/pending.rs",
        "strict mode's pending record, read by recovery and the pointers: state kept in hook/",
    ),
    (
        "src/hook/quarantine.rs",
        "the throwaway views of killed pre-receive hooks, swept by the session's sweep",
    ),
];

/// Folders (or root files) below `src/` that must not print (rule 4), and
/// the files among them that may: the one place output is made.
const QUIET: &[&str] = &["src/state/", "src/housekeeping/", "src/sys/"];
const MAY_PRINT: &[&str] = &["src/sys/output.rs"];

/// One place in a file where it reaches a module, or prints.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
    /// The path or macro as written.
    text: String,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} `{}`", self.file, self.line, self.text)
    }
}

/// What the checker read of one `src/`.
#[derive(Debug, Default)]
struct Tree {
    /// Module path → file (`["state", "journal"]` → `src/state/journal.rs`).
    files: BTreeMap<Vec<String>, String>,
    /// from file → to file → the sites making that edge.
    edges: BTreeMap<String, BTreeMap<String, Vec<Site>>>,
    /// Every path that resolves into the library, with the module path it
    /// names (`["ops", "status", "run"]`).
    paths: Vec<(Site, Vec<String>)>,
    /// Print macros and error rendering outside test code.
    prints: Vec<Site>,
}

impl Tree {
    /// The deepest file of a module path's prefixes.
    fn file_of(&self, abs: &[String]) -> &str {
        (0..=abs.len())
            .rev()
            .find_map(|n| self.files.get(&abs[..n]))
            .map(String::as_str)
            .unwrap_or("src/lib.rs")
    }
}

/// The layer (top-level module) of a file: `src/state/journal.rs` → state,
/// `src/error.rs` → error, `src/lib.rs` → lib.
fn layer_of(file: &str) -> &str {
    let rel = file.trim_start_matches("src/");
    match rel.split_once('/') {
        Some((folder, _)) => folder,
        None => rel.trim_end_matches(".rs"),
    }
}

/// Parse every `.rs` file under `<dir>/src` (main.rs aside: the binary is the
/// top and reaches only `lib`).
fn read_tree(dir: &Path) -> Result<Tree, String> {
    let src = dir.join("src");
    let mut paths = Vec::new();
    collect_rs(&src, &mut paths)?;
    paths.sort();
    let mut tree = Tree::default();
    let mut parsed = Vec::new();
    for path in &paths {
        let rel = path.strip_prefix(&src).map_err(|e| e.to_string())?;
        if rel == Path::new("main.rs") {
            continue;
        }
        let name = format!("src/{}", rel.to_string_lossy());
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        let file = syn::parse_file(&text)
            .map_err(|e| format!("could not parse {name}:{}: {e}", e.span().start().line))?;
        tree.files.insert(module_of(rel), name.clone());
        parsed.push((name, module_of(rel), file));
    }
    for (name, module, file) in parsed {
        let children = file
            .items
            .iter()
            .filter_map(|i| match i {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut v = Visitor {
            file: name.clone(),
            scope: module.clone(),
            file_scope: module,
            children,
            aliases: BTreeMap::new(),
            found: Vec::new(),
            prints: Vec::new(),
            in_test: 0,
            error: None,
        };
        v.visit_file(&file);
        if let Some(e) = v.error {
            return Err(e);
        }
        for (site, abs) in v.found {
            let to = tree.file_of(&abs).to_string();
            if to != name {
                let sites = tree.edges.entry(name.clone()).or_default();
                sites.entry(to).or_default().push(site.clone());
            }
            tree.paths.push((site, abs));
        }
        tree.prints.extend(v.prints);
    }
    Ok(tree)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `lib.rs` → [], `a.rs` → [a], `a/mod.rs` → [a], `a/b.rs` → [a, b].
fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// Walks one file: the module path of every path that starts at `crate`,
/// `super` or `self`, and the print sites.
struct Visitor {
    file: String,
    /// The module the visitor is in (the file's, plus inline `mod`s).
    scope: Vec<String>,
    /// The file's own module.
    file_scope: Vec<String>,
    /// Names the file's top-level `use`s brought in, → what they name.
    aliases: BTreeMap<String, Vec<String>>,
    /// The modules the file declares: a path may start with their names.
    children: BTreeSet<String>,
    found: Vec<(Site, Vec<String>)>,
    prints: Vec<Site>,
    /// > 0 inside `#[cfg(test)]` or `#[test]` items.
    in_test: usize,
    error: Option<String>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

impl Visitor {
    fn line(&self, span: proc_macro2::Span) -> usize {
        span.start().line
    }

    /// Resolve `segs` (as written) against the current scope; returns the
    /// module path when it names something of the library.
    fn resolve(&mut self, segs: &[String], span: proc_macro2::Span) -> Option<Vec<String>> {
        let mut abs = self.scope.clone();
        let mut rest = segs;
        match segs.first().map(String::as_str) {
            Some(first) if self.aliases.contains_key(first) => {
                abs = self.aliases[first].clone();
                rest = &segs[1..];
            }
            Some("crate") => {
                abs.clear();
                rest = &segs[1..];
            }
            Some("self") => rest = &segs[1..],
            Some(first) if self.children.contains(first) => {}
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    if abs.pop().is_none() {
                        self.error = Some(format!(
                            "{}:{}: `super` above the crate root",
                            self.file,
                            self.line(span)
                        ));
                        return None;
                    }
                    rest = &rest[1..];
                }
            }
            _ => return None,
        }
        abs.extend(rest.iter().filter(|s| *s != "self").cloned());
        let site = Site {
            file: self.file.clone(),
            line: self.line(span),
            text: segs.join("::"),
        };
        self.found.push((site, abs.clone()));
        Some(abs)
    }

    /// A `use` leaf: resolved, and remembered under the name it brings in
    /// when it is the file's own (not an inline module's).
    fn use_leaf(&mut self, segs: &[String], name: String, span: proc_macro2::Span) {
        if let Some(abs) = self.resolve(segs, span) {
            if self.scope == self.file_scope && name != "_" {
                self.aliases.insert(name, abs);
            }
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                let name = match n.ident.to_string().as_str() {
                    "self" => prefix[prefix.len().saturating_sub(2)].clone(),
                    other => other.to_string(),
                };
                self.use_leaf(&prefix.clone(), name, n.ident.span());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.use_leaf(&prefix.clone(), r.rename.to_string(), r.ident.span());
                prefix.pop();
            }
            syn::UseTree::Glob(g) => {
                self.resolve(&prefix.clone(), g.star_token.span());
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Visitor {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.attrs.iter().any(|a| a.path().is_ident("path")) {
            // Where a file sits is the whole truth of its module here.
            self.error = Some(format!(
                "{}:{}: `#[path]` is not allowed in src/",
                self.file,
                self.line(m.span())
            ));
        }
        let test = is_test(&m.attrs);
        self.in_test += usize::from(test);
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
        self.in_test -= usize::from(test);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let test = is_test(&f.attrs);
        self.in_test += usize::from(test);
        syn::visit::visit_item_fn(self, f);
        self.in_test -= usize::from(test);
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(crate)` names no module to reach.
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        // A path of one segment is a local name or an import, already counted.
        if segs.len() > 1 {
            self.resolve(&segs, p.span());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = m.path.segments.last().map(|s| s.ident.to_string());
        let prints = matches!(
            name.as_deref(),
            Some("print" | "println" | "eprint" | "eprintln" | "dbg")
        );
        if prints && self.in_test == 0 {
            self.prints.push(Site {
                file: self.file.clone(),
                line: self.line(m.path.span()),
                text: format!("{}!", name.unwrap_or_default()),
            });
        }
        // Paths in a macro's arguments, where they parse as expressions
        // (`format!`, `assert!`, `vec!`, ...).
        let args = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        );
        if let Ok(args) = args {
            for e in &args {
                self.visit_expr(e);
            }
        }
        syn::visit::visit_macro(self, m);
    }

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        // `output::error(..)` / `output::report(..)`, however the path starts.
        if let syn::Expr::Path(p) = &*c.func {
            let segs: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            let renders = segs.len() >= 2
                && segs[segs.len() - 2] == "output"
                && matches!(segs[segs.len() - 1].as_str(), "error" | "report");
            if renders && self.in_test == 0 {
                self.prints.push(Site {
                    file: self.file.clone(),
                    line: self.line(p.span()),
                    text: segs.join("::"),
                });
            }
        }
        syn::visit::visit_expr_call(self, c);
    }
}

// ---------------------------------------------------------------- the rules

/// Rule 1: for each circle between files, the files and one site of each
/// edge that keeps it tied.
fn circles(tree: &Tree) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(f) = todo.pop() {
            for to in tree.edges.get(&f).into_iter().flat_map(|t| t.keys()) {
                if seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let mut report = Vec::new();
    let mut done = BTreeSet::new();
    for f in tree.files.values() {
        if done.contains(f) || !reach(f).contains(f) {
            continue;
        }
        // The knot: every file f reaches that reaches f back.
        let knot: BTreeSet<String> = reach(f)
            .into_iter()
            .filter(|o| reach(o).contains(f))
            .collect();
        let mut lines = vec![format!(
            "circle between {}:",
            knot.iter().cloned().collect::<Vec<_>>().join(", ")
        )];
        for from in &knot {
            for (to, sites) in tree.edges.get(from).into_iter().flatten() {
                if knot.contains(to) {
                    lines.push(format!("    {from} -> {to}: {}", sites[0]));
                }
            }
        }
        report.push(lines.join("\n"));
        done.extend(knot);
    }
    report
}

/// Rule 2: every edge from a file to one of a layer above its own.
fn upward(tree: &Tree) -> Vec<String> {
    let rank = |layer: &str| LAYERS.iter().position(|l| l.contains(&layer));
    let mut report = Vec::new();
    for file in tree.files.values() {
        if rank(layer_of(file)).is_none() {
            report.push(format!(
                "{file} is in no layer: add {} to LAYERS in tests/integration/structure.rs",
                layer_of(file)
            ));
        }
    }
    for (from, tos) in &tree.edges {
        for (to, sites) in tos {
            let (Some(f), Some(t)) = (rank(layer_of(from)), rank(layer_of(to))) else {
                continue;
            };
            if t < f && !KNOWN_UPWARD.iter().any(|(k, _)| k == to) {
                report.push(format!(
                    "{from} reaches {to}, a layer above it: {}",
                    sites[0]
                ));
            }
        }
    }
    report
}

/// Rule 3: every path from a file of `ops/` to another file of `ops/`, and
/// every path out of `ops/mod.rs`.
fn operations_reaching_each_other(tree: &Tree) -> Vec<String> {
    let mut report = Vec::new();
    for (site, abs) in &tree.paths {
        let Some(op) = site.file.strip_prefix("src/ops/") else {
            continue;
        };
        let op = op.trim_end_matches(".rs");
        if op == "mod" {
            report.push(format!(
                "src/ops/mod.rs only declares the operations but reaches {site}"
            ));
            continue;
        }
        if abs.first().map(String::as_str) != Some("ops") {
            continue;
        }
        let target = abs.get(1).map(String::as_str);
        if target != Some(op) {
            report.push(format!(
                "operation {} reaches another file of ops/: {site} (move what both need to a layer below)",
                site.file
            ));
        }
    }
    report
}

/// Rule 4: print sites in the quiet layers.
fn deep_prints(tree: &Tree) -> Vec<String> {
    tree.prints
        .iter()
        .filter(|s| {
            QUIET.iter().any(|q| s.file.starts_with(q)) && !MAY_PRINT.contains(&s.file.as_str())
        })
        .map(|s| {
            format!(
                "{s}: a deep layer prints; return the text or the error, or go through sys::output"
            )
        })
        .collect()
}

// ---------------------------------------------------------------- the real tree

fn real_tree() -> Tree {
    read_tree(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_none(what: &str, report: Vec<String>) {
    assert!(report.is_empty(), "{what}:\n{}", report.join("\n"));
}

#[test]
fn the_real_tree_parses_and_has_edges() {
    // Guards the rule tests below from passing on an empty graph.
    let tree = real_tree();
    let reaches = |from: &str, to: &str| tree.edges.get(from).is_some_and(|t| t.contains_key(to));
    assert!(
        reaches("src/ops/promote.rs", "src/deploy/switch.rs"),
        "{:?}",
        tree.edges.get("src/ops/promote.rs")
    );
    assert!(
        reaches("src/sys/fs.rs", "src/error.rs"),
        "{:?}",
        tree.edges.get("src/sys/fs.rs")
    );
    assert!(
        reaches("src/lib.rs", "src/ops/init.rs"),
        "{:?}",
        tree.edges.get("src/lib.rs")
    );
    // The switch, which owns the production flip, calls nothing above it
    // (rule 2 covers the layers above; these share its layer).
    for above in ["src/session/recovery.rs", "src/session/mod.rs"] {
        assert!(
            !reaches("src/deploy/switch.rs", above),
            "the switch calls back up into {above}"
        );
    }
    // The files the exceptions name are still where they are said to be.
    for (file, _) in KNOWN_UPWARD {
        assert!(
            tree.files.values().any(|f| f == file),
            "{file} is gone: drop it from KNOWN_UPWARD"
        );
    }
}

#[test]
fn src_has_no_circles_between_files() {
    assert_none(
        "src/ has circles between files; move what one side needs so the arrows go one way",
        circles(&real_tree()),
    );
}

#[test]
fn lower_layers_do_not_reach_upper_ones() {
    assert_none("a file reaches a layer above its own", upward(&real_tree()));
}

#[test]
fn operations_do_not_call_each_other() {
    assert_none(
        "src/ops/ files reach each other",
        operations_reaching_each_other(&real_tree()),
    );
}

#[test]
fn deep_layers_do_not_print() {
    assert_none("deep layers print", deep_prints(&real_tree()));
}

// ---------------------------------------------------------------- the checker

/// A throwaway crate: `files` are (path below src/, text).
fn tree(files: &[(&str, &str)]) -> Tree {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    read_tree(dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

const LIB: (&str, &str) = (
    "lib.rs",
    "mod ops;\nmod deploy;\nmod state;\nmod sys;\nmod error;\n",
);

#[test]
fn checker_reports_a_planted_circle_with_its_lines() {
    let t = tree(&[
        LIB,
        ("state/mod.rs", "pub mod a;\npub mod b;\n"),
        ("state/a.rs", "pub fn f() {\n    crate::sys::fs::g();\n}\n"),
        ("sys/fs.rs", "use super::super::state::b as bee;\npub fn g() { bee::h() }\n"),
        ("state/b.rs", "pub fn h() { format!(\"{:?}\", crate::state::a::f()); }\n"),
        ("error.rs", "use crate::sys;\npub fn e() { sys::fs::g() }\n#[cfg(test)]\nmod tests { use super::*; }\n"),
    ]);
    let report = circles(&t).join("\n");
    assert!(
        report.contains("circle between src/state/a.rs, src/state/b.rs, src/sys/fs.rs:"),
        "{report}"
    );
    assert!(
        report.contains("src/state/a.rs -> src/sys/fs.rs: src/state/a.rs:2 `crate::sys::fs::g`"),
        "{report}"
    );
    assert!(
        report
            .contains("src/sys/fs.rs -> src/state/b.rs: src/sys/fs.rs:1 `super::super::state::b`"),
        "{report}"
    );
    // Through a macro's arguments.
    assert!(
        report.contains("src/state/b.rs -> src/state/a.rs: src/state/b.rs:1 `crate::state::a::f`"),
        "{report}"
    );
    // error.rs reaches fs.rs through a name it imported: an edge, no circle.
    assert!(
        t.edges["src/error.rs"].contains_key("src/sys/fs.rs"),
        "{:?}",
        t.edges
    );
    assert!(!report.contains("error.rs"), "{report}");
    let clean = tree(&[
        LIB,
        ("state/mod.rs", "use crate::error::E;\n"),
        ("error.rs", "pub struct E;\n"),
    ]);
    assert_none("clean", circles(&clean));
}

#[test]
fn checker_reports_a_planted_upward_reach() {
    let clean = tree(&[
        LIB,
        ("ops/mod.rs", "pub fn f() { crate::state::g() }\n"),
        ("state/mod.rs", "use crate::error::E;\n"),
        ("error.rs", "pub struct E;\n"),
    ]);
    assert_none("clean", upward(&clean));
    let t = tree(&[
        LIB,
        (
            "deploy/mod.rs",
            "pub fn f() { crate::hook::pending::kept() }\n",
        ),
        ("hook/pending.rs", ""),
        (
            "state/journal.rs",
            "pub fn f() {\n    let _ = crate::deploy::switch::run;\n}\n",
        ),
        ("weird.rs", ""),
    ]);
    let report = upward(&t).join("\n");
    assert!(
        report.contains("src/state/journal.rs reaches src/deploy/mod.rs, a layer above it: src/state/journal.rs:2 `crate::deploy::switch::run`"),
        "{report}"
    );
    assert!(report.contains("src/weird.rs is in no layer"), "{report}");
    // The listed exception is not reported.
    assert!(!report.contains("pending"), "{report}");
    assert_eq!(report.lines().count(), 2, "{report}");
}

#[test]
fn checker_reports_operations_reaching_each_other() {
    let t = tree(&[
        LIB,
        ("ops/mod.rs", "pub mod a;\npub mod b;\nuse crate::state::x;\n"),
        ("ops/a.rs", "use super::b::run;\npub fn run() { self::helper() }\nfn helper() {}\n#[cfg(test)]\nmod tests { use super::*; }\n"),
        ("ops/b.rs", "pub fn run() { crate::ops::b::x(); crate::state::y() }\nfn x() {}\n"),
    ]);
    let report = operations_reaching_each_other(&t);
    assert_eq!(report.len(), 2, "{report:#?}");
    assert!(report.iter().any(|r| r.contains("src/ops/mod.rs only declares the operations but reaches src/ops/mod.rs:3 `crate::state::x`")), "{report:#?}");
    assert!(
        report.iter().any(|r| r.contains(
            "operation src/ops/a.rs reaches another file of ops/: src/ops/a.rs:1 `super::b::run`"
        )),
        "{report:#?}"
    );
}

#[test]
fn checker_reports_prints_in_deep_layers_but_not_in_tests() {
    let t = tree(&[
        LIB,
        ("state/mod.rs", "pub fn f() {\n    println!(\"x\");\n}\n#[cfg(test)]\nmod tests {\n    fn g() { eprintln!(\"fine\") }\n}\n"),
        ("sys/mod.rs", "pub mod output;\npub fn h(e: E) { output::report(&e) }\n"),
        ("sys/output.rs", "pub fn report(e: &E) { eprintln!(\"error: {e}\") }\n"),
        ("ops/mod.rs", "pub fn list() { println!(\"a row\") }\n"),
        ("housekeeping/trash.rs", "#[test]\nfn t() { eprintln!(\"SKIPPED\") }\npub fn k() { crate::sys::output::error(\"x\") }\n"),
    ]);
    let report = deep_prints(&t).join("\n");
    assert!(report.contains("src/state/mod.rs:2 `println!`"), "{report}");
    assert!(
        report.contains("src/sys/mod.rs:2 `output::report`"),
        "{report}"
    );
    assert!(
        report.contains("src/housekeeping/trash.rs:3 `crate::sys::output::error`"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 3, "{report}");
}

#[test]
fn checker_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "fn broken( {\n").expect("write");
    let err = read_tree(dir.path()).expect_err("a parse error is refused");
    assert!(err.contains("could not parse src/lib.rs"), "{err}");
    std::fs::write(src.join("lib.rs"), "#[path = \"x/y.rs\"]\nmod y;\n").expect("write");
    let err = read_tree(dir.path()).expect_err("#[path] is refused");
    assert!(err.contains("src/lib.rs:1: `#[path]`"), "{err}");
    std::fs::write(src.join("lib.rs"), "use super::x;\n").expect("write");
    let err = read_tree(dir.path()).expect_err("super above the root is refused");
    assert!(
        err.contains("src/lib.rs:1: `super` above the crate root"),
        "{err}"
    );
}

/// No decisions on text in src/ (a rule of its own, beside the file graph).
mod strings;
