//! Issue 9: the shape of `src/`, checked by parsing it.
//!
//! The house reads one way: hook → operation → switch / warm-up → rooms. Two
//! rules keep it so, and both are checked here on the real tree:
//!
//! 1. No circles between files: no file reaches (by `crate::`, `super::`,
//!    `self::`, a `use`, or a path through a child module or a name imported
//!    from one) a file that reaches back to it, directly or through others.
//! 2. A file in `src/ops/` never reaches another file in `src/ops/` (they share
//!    code through the switch/pointers/session modules instead), and
//!    `src/ops/mod.rs` reaches nothing: it only declares the operations.
//!
//! The graph is file → file. Each path is resolved to the deepest file that
//! exists for its module prefix (`crate::ops::promote::run` → `src/ops/promote.rs`,
//! `crate::error::Error` → `src/error.rs`). Declaring a child module
//! (`pub mod x;`) is not an edge; an inline module (`mod tests { use super::*; }`)
//! is part of its file, so `super` there is the file itself. Paths inside macro
//! invocations are seen where the macro's arguments parse as expressions
//! (`format!`, `assert!`, `vec!`, ...). Known blind spots, on purpose: names
//! reached only through a glob import's re-exports, and paths in doc links or
//! strings (neither makes the compiler reach the file).
//!
//! The checker itself is pinned below by tests on small synthetic trees, so a
//! checker that finds nothing cannot pass for a clean `src/`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use syn::spanned::Spanned;
use syn::visit::Visit;

/// One place in a file that makes it reach another file.
#[derive(Debug, Clone)]
struct Site {
    /// 1-based line of the path.
    line: usize,
    /// The path as written (`crate::ops::promote::run`, `super::Ctx`).
    text: String,
}

/// The file graph of one `src/` directory. Files are named relative to the
/// directory holding `src/` (`src/ops/promote.rs`).
#[derive(Debug, Default)]
struct Graph {
    files: BTreeSet<String>,
    /// from → to → every site making that edge, in source order.
    edges: BTreeMap<String, BTreeMap<String, Vec<Site>>>,
}

impl Graph {
    fn targets(&self, from: &str) -> impl Iterator<Item = &String> {
        self.edges.get(from).into_iter().flat_map(|m| m.keys())
    }

    fn sites(&self, from: &str, to: &str) -> &[Site] {
        self.edges
            .get(from)
            .and_then(|m| m.get(to))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// `src/a.rs:12 \`crate::b::f\`` (and how many more sites there are).
    fn describe_edge(&self, from: &str, to: &str) -> String {
        let sites = self.sites(from, to);
        let mut s = match sites.first() {
            Some(site) => format!("{from}:{} `{}`", site.line, site.text),
            None => format!("{from} (no site recorded)"),
        };
        // One grouped `use` names several items on one line: each line once.
        let mut lines: Vec<usize> = sites.iter().map(|x| x.line).collect();
        lines.dedup();
        if lines.len() > 1 {
            let more: Vec<String> = lines[1..].iter().map(usize::to_string).collect();
            let _ = write!(s, " (also lines {})", more.join(", "));
        }
        s
    }
}

/// Which crate a file belongs to: the library (lib.rs and its modules) or the
/// binary (main.rs, which reaches the library as `symdeploy::`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crate {
    Lib,
    Bin,
}

/// Parse every `.rs` file under `<dir>/src` and build the file graph.
fn build_graph(dir: &Path, lib_name: &str) -> Result<Graph, String> {
    let src = dir.join("src");
    let mut paths = Vec::new();
    collect_rs(&src, &mut paths)?;
    paths.sort();

    // Module path of each library file, from where it sits (no `#[path]`:
    // it is refused below, so location is the whole truth).
    let mut module_files: HashMap<Vec<String>, String> = HashMap::new();
    let mut parsed = Vec::new();
    for path in &paths {
        let rel = path
            .strip_prefix(dir)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        let file = syn::parse_file(&text)
            .map_err(|e| format!("could not parse {rel}:{}: {e}", e.span().start().line))?;
        let (krate, module) = module_of(&src, path)?;
        if krate == Crate::Lib {
            module_files.insert(module.clone(), rel.clone());
        }
        parsed.push((rel, krate, module, file));
    }

    let mut graph = Graph::default();
    for (rel, krate, module, file) in &parsed {
        graph.files.insert(rel.clone());
        let mut paths_found = Vec::new();
        scan_items(&file.items, module, &mut paths_found, rel)?;
        for (scope, found) in paths_found {
            let Some(abs) = absolute(&scope, &found.segments, *krate, lib_name) else {
                continue;
            };
            let Some(target) = deepest_file(&module_files, &abs) else {
                continue;
            };
            if target == rel {
                continue;
            }
            graph
                .edges
                .entry(rel.clone())
                .or_default()
                .entry(target.clone())
                .or_default()
                .push(Site {
                    line: found.line,
                    text: found.text,
                });
        }
    }
    for by_target in graph.edges.values_mut() {
        for sites in by_target.values_mut() {
            sites.sort_by_key(|s| s.line);
        }
    }
    Ok(graph)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("could not list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("could not list {}: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("could not stat {}: {e}", path.display()))?;
        if kind.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `src/lib.rs` → [], `src/a.rs` → [a], `src/a/b.rs` and `src/a/b/mod.rs` → [a, b].
fn module_of(src: &Path, path: &Path) -> Result<(Crate, Vec<String>), String> {
    let rel = path
        .strip_prefix(src)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut segs: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segs == ["main"] {
        return Ok((Crate::Bin, Vec::new()));
    }
    if segs == ["lib"] {
        return Ok((Crate::Lib, Vec::new()));
    }
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    Ok((Crate::Lib, segs))
}

/// The file for the longest prefix of `abs` that is a file's module.
fn deepest_file<'a>(
    module_files: &'a HashMap<Vec<String>, String>,
    abs: &[String],
) -> Option<&'a String> {
    (0..=abs.len())
        .rev()
        .find_map(|n| module_files.get(&abs[..n]))
}

/// What a module scope (a file, or an inline `mod x { }` in it) can name by its
/// first segment: child modules and names brought in by `use`.
#[derive(Debug, Default)]
struct Scope {
    /// The scope's own module path.
    module: Vec<String>,
    /// Declared child modules (`mod x;` or `mod x { }`).
    children: BTreeSet<String>,
    /// `use a::b::c as d;` → d ↦ the path `a::b::c` as written, resolved
    /// lazily against this scope.
    imports: BTreeMap<String, Vec<String>>,
}

/// A path as found in the source, before resolution.
#[derive(Debug, Clone)]
struct Found {
    segments: Vec<String>,
    line: usize,
    text: String,
}

/// Walk the items of one module scope: collect its declarations, the paths
/// its items use, and recurse into inline modules (same file, deeper scope).
fn scan_items(
    items: &[syn::Item],
    module: &[String],
    out: &mut Vec<(Rc<Scope>, Found)>,
    file: &str,
) -> Result<(), String> {
    let mut scope = Scope {
        module: module.to_vec(),
        ..Scope::default()
    };
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                if let Some(attr) = m.attrs.iter().find(|a| a.path().is_ident("path")) {
                    return Err(format!(
                        "{file}:{}: `#[path]` on mod {} is not understood by this checker; place the file where Rust looks for it by default",
                        attr.span().start().line,
                        m.ident
                    ));
                }
                scope.children.insert(m.ident.to_string());
            }
            other => {
                // `use` items at this level and in function bodies: a body's
                // import is taken as visible in the whole module (Rust scopes
                // it to the block; shadowing one by another name is rare).
                let mut uses = UseFinder::default();
                uses.visit_item(other);
                for leaf in uses.leaves {
                    if let Some(name) = leaf.binds {
                        scope.imports.insert(name, leaf.segments);
                    }
                }
            }
        }
    }

    let mut collector = Collector::default();
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                // Attributes on the declaration belong to this scope; the
                // body is a deeper scope of the same file.
                for attr in &m.attrs {
                    collector.visit_attribute(attr);
                }
                if let Some((_, inner)) = &m.content {
                    let mut child = module.to_vec();
                    child.push(m.ident.to_string());
                    scan_items(inner, &child, out, file)?;
                }
            }
            other => collector.visit_item(other),
        }
    }
    if let Some((line, name)) = collector.nested_mod {
        return Err(format!(
            "{file}:{line}: `mod {name}` inside a function body is not understood by this checker; move it to module level"
        ));
    }
    let scope = Rc::new(scope);
    out.extend(collector.found.into_iter().map(|f| (Rc::clone(&scope), f)));
    Ok(())
}

/// The `use` leaves of an item, its function bodies included, not entering
/// inline modules (they are scopes of their own).
#[derive(Default)]
struct UseFinder {
    leaves: Vec<UseLeaf>,
}

impl<'ast> Visit<'ast> for UseFinder {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_none() {
            flatten_use(&u.tree, Vec::new(), &mut self.leaves);
        }
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}
}

/// One leaf of a `use` tree.
struct UseLeaf {
    segments: Vec<String>,
    /// The name it binds in the scope (None for globs and `_`).
    binds: Option<String>,
    line: usize,
}

fn flatten_use(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
    let line = tree.span().start().line;
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix;
            next.push(p.ident.to_string());
            flatten_use(&p.tree, next, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            // `a::{self}` binds `a` and names the module `a` itself.
            if name == "self" {
                let binds = prefix.last().cloned();
                out.push(UseLeaf {
                    segments: prefix,
                    binds,
                    line,
                });
            } else {
                let mut segments = prefix;
                segments.push(name.clone());
                out.push(UseLeaf {
                    segments,
                    binds: Some(name),
                    line,
                });
            }
        }
        syn::UseTree::Rename(r) => {
            let mut segments = prefix;
            let ident = r.ident.to_string();
            if ident != "self" {
                segments.push(ident);
            }
            let alias = r.rename.to_string();
            out.push(UseLeaf {
                segments,
                binds: (alias != "_").then_some(alias),
                line,
            });
        }
        syn::UseTree::Glob(_) => out.push(UseLeaf {
            segments: prefix,
            binds: None,
            line,
        }),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix.clone(), out);
            }
        }
    }
}

/// Collects every path in the items it visits (expressions, types, patterns,
/// trait bounds, macro names, `use` leaves, and macro arguments that parse as
/// expressions). Does not descend into inline modules: `scan_items` does,
/// with their own scope.
#[derive(Default)]
struct Collector {
    found: Vec<Found>,
    /// The first `mod` met inside a function body: line and name.
    nested_mod: Option<(usize, String)>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        // A leading `::` names an external crate, never a file of ours.
        // A single segment names a value or an imported item whose `use`
        // already made the edge; a module can't stand alone there.
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.found.push(Found {
                text: segments.join("::"),
                segments,
                line: path.span().start().line,
            });
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_some() {
            return;
        }
        let mut leaves = Vec::new();
        flatten_use(&u.tree, Vec::new(), &mut leaves);
        for leaf in leaves {
            let mut text = leaf.segments.join("::");
            if leaf.binds.is_none() {
                text.push_str("::*");
            }
            self.found.push(Found {
                segments: leaf.segments,
                line: leaf.line,
                text,
            });
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // Only reached for a module inside a fn or block (scan_items takes
        // module items itself). One there would need a scope of its own, so
        // it is refused with its place rather than misread.
        self.nested_mod
            .get_or_insert((m.span().start().line, m.ident.to_string()));
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        syn::visit::visit_macro(self, mac);
        // `format!("{}", crate::x::f())`, `assert!(a::b())`: arguments that
        // parse as comma-separated expressions are scanned too.
        let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        match mac.parse_body_with(parser) {
            Ok(args) => {
                for expr in &args {
                    self.visit_expr(expr);
                }
            }
            // `tracing::info!(x = %crate::a::b())`, `macro_rules!` bodies
            // (`$crate::a::b`): read `a::b::c` runs straight from the tokens.
            Err(_) => self.scan_tokens(mac.tokens.clone()),
        }
    }
}

impl Collector {
    fn scan_tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::{Spacing, TokenTree};
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let is_sep = |i: usize| {
            matches!((trees.get(i), trees.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut i = 0;
        while i < trees.len() {
            if let TokenTree::Group(g) = &trees[i] {
                self.scan_tokens(g.stream());
                i += 1;
                continue;
            }
            let preceded_by_sep = i >= 2 && is_sep(i - 2);
            if let (TokenTree::Ident(first), false) = (&trees[i], preceded_by_sep) {
                let line = first.span().start().line;
                let mut segments = vec![first.to_string()];
                let mut j = i + 1;
                while is_sep(j) {
                    match trees.get(j + 2) {
                        Some(TokenTree::Ident(next)) => {
                            segments.push(next.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if segments.len() > 1 {
                    self.found.push(Found {
                        text: segments.join("::"),
                        segments,
                        line,
                    });
                }
                i = j;
                continue;
            }
            i += 1;
        }
    }
}

/// The absolute module path (below the library's root) a path names, when it
/// can name one of our files at all.
fn absolute(scope: &Scope, segs: &[String], krate: Crate, lib_name: &str) -> Option<Vec<String>> {
    absolute_depth(scope, segs, krate, lib_name, 0)
}

fn absolute_depth(
    scope: &Scope,
    segs: &[String],
    krate: Crate,
    lib_name: &str,
    depth: usize,
) -> Option<Vec<String>> {
    let first = segs.first()?;
    // An import that names itself (`use a::b as b` loops) stops here.
    if depth > 8 {
        return None;
    }
    match first.as_str() {
        "crate" if krate == Crate::Lib => Some(segs[1..].to_vec()),
        // The binary's own crate root is main.rs itself: not a library file.
        "crate" => None,
        _ if first == lib_name && krate == Crate::Bin => Some(segs[1..].to_vec()),
        "self" | "super" => {
            if krate == Crate::Bin {
                return None;
            }
            let mut module = scope.module.clone();
            let mut rest = segs;
            if rest[0] == "self" {
                rest = &rest[1..];
            }
            while rest.first().is_some_and(|s| s == "super") {
                module.pop()?;
                rest = &rest[1..];
            }
            module.extend(rest.iter().cloned());
            Some(module)
        }
        _ if scope.children.contains(first) && krate == Crate::Lib && segs.len() > 1 => {
            let mut module = scope.module.clone();
            module.extend(segs.iter().cloned());
            Some(module)
        }
        _ => {
            let target = scope.imports.get(first)?;
            // A `use` of a path through our own modules: resolve what it names
            // (against the same scope, as Rust does), then append the rest.
            if target.first() == Some(first) && target.len() == 1 {
                return None;
            }
            let mut base = absolute_depth(scope, target, krate, lib_name, depth + 1)?;
            base.extend(segs[1..].iter().cloned());
            Some(base)
        }
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.targets(v) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for f in &graph.files {
        if !t.index.contains_key(f.as_str()) {
            t.visit(f);
        }
    }
    t.out.sort();
    t.out
}

/// Rule 1's report: for each knot, one shortest circle through every edge in
/// it, so each edge that keeps the knot tied is shown once with its line.
fn rule1_violations(graph: &Graph) -> Vec<String> {
    let mut report = Vec::new();
    for comp in circles(graph) {
        let members: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
        let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut text = format!("circle of {} files: {}\n", comp.len(), comp.join(", "));
        for from in &comp {
            for to in graph.targets(from).filter(|t| members.contains(t.as_str())) {
                let Some(back) = shortest_path(graph, &members, to, from) else {
                    continue;
                };
                // back = to ... from; the circle is from -> to -> ... -> from.
                let mut cycle = vec![from.clone()];
                cycle.extend(back);
                let key = rotate_to_min(&cycle[..cycle.len() - 1]);
                if !seen.insert(key) {
                    continue;
                }
                let _ = writeln!(text, "  {}", cycle.join(" -> "));
                for pair in cycle.windows(2) {
                    let _ = writeln!(
                        text,
                        "      {} -> {}",
                        graph.describe_edge(&pair[0], &pair[1]),
                        pair[1]
                    );
                }
            }
        }
        report.push(text);
    }
    report
}

/// BFS inside `members` from `from` to `to`, both ends included.
fn shortest_path(
    graph: &Graph,
    members: &BTreeSet<&str>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut prev: HashMap<String, String> = HashMap::new();
    let mut queue = VecDeque::from([from.to_string()]);
    let mut seen = BTreeSet::from([from.to_string()]);
    while let Some(v) = queue.pop_front() {
        if v == to {
            let mut path = vec![v.clone()];
            let mut cur = v;
            while let Some(p) = prev.get(&cur) {
                path.push(p.clone());
                cur = p.clone();
            }
            path.reverse();
            return Some(path);
        }
        for w in graph.targets(&v) {
            if members.contains(w.as_str()) && seen.insert(w.clone()) {
                prev.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    None
}

fn rotate_to_min(cycle: &[String]) -> Vec<String> {
    let start = (0..cycle.len())
        .min_by_key(|&i| &cycle[i])
        .unwrap_or_default();
    cycle[start..]
        .iter()
        .chain(&cycle[..start])
        .cloned()
        .collect()
}

/// Rule 2's report: every edge from an operation to another file of `ops/`,
/// and every edge out of `ops/mod.rs`.
fn rule2_violations(graph: &Graph) -> Vec<String> {
    let mut report = Vec::new();
    for (from, targets) in &graph.edges {
        if !from.starts_with("src/ops/") {
            continue;
        }
        let is_mod = from == "src/ops/mod.rs";
        for to in targets.keys() {
            if is_mod {
                report.push(format!(
                    "src/ops/mod.rs only declares the operations but reaches {to}: {}",
                    graph.describe_edge(from, to)
                ));
            } else if to.starts_with("src/ops/") {
                report.push(format!(
                    "operation {from} reaches {to}: {} (move what both need out of ops/, to the switch/pointers/session modules they share)",
                    graph.describe_edge(from, to)
                ));
            }
        }
    }
    report
}

// ---------------------------------------------------------------- the real tree

fn real_graph() -> Graph {
    build_graph(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        env!("CARGO_PKG_NAME"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_real_tree_parses_and_has_edges() {
    // Guards the two rule tests below from passing on an empty graph.
    let graph = real_graph();
    assert!(graph.files.contains("src/lib.rs"), "{:?}", graph.files);
    assert!(graph.files.contains("src/ops/mod.rs"), "{:?}", graph.files);
    assert!(
        graph.targets("src/main.rs").any(|t| t == "src/lib.rs"),
        "main.rs calls symdeploy::main: {:?}",
        graph.edges.get("src/main.rs")
    );
    assert!(
        graph.targets("src/sys/fs.rs").any(|t| t == "src/error.rs"),
        "fsutil returns crate::error types"
    );
    assert!(
        !graph.targets("src/error.rs").any(|t| t == "src/sys/fs.rs"),
        "error.rs must not reach fsutil.rs (the circle broken in issue 9): {}",
        graph.describe_edge("src/error.rs", "src/sys/fs.rs")
    );
    // The shape the house is meant to have: promote reaches the switch, and
    // the switch, which owns the production flip, calls nothing above it.
    assert!(graph
        .targets("src/ops/promote.rs")
        .any(|t| t == "src/deploy/switch.rs"));
    for above in [
        "src/ops/promote.rs",
        "src/ops/rollback.rs",
        "src/session/recovery.rs",
        "src/session/mod.rs",
        "src/hook/mod.rs",
        "src/hook/strict.rs",
    ] {
        assert!(
            !graph.targets("src/deploy/switch.rs").any(|t| t == above),
            "the switch must not call back up into {above}: {}",
            graph.describe_edge("src/deploy/switch.rs", above)
        );
    }
}

#[test]
fn src_has_no_circles_between_files() {
    let report = rule1_violations(&real_graph());
    assert!(
        report.is_empty(),
        "src/ has circles between files; move what one side needs so the arrows go one way:\n\n{}",
        report.join("\n")
    );
}

#[test]
fn operations_do_not_call_each_other() {
    let report = rule2_violations(&real_graph());
    assert!(
        report.is_empty(),
        "src/ops/ files reach each other:\n{}",
        report.join("\n")
    );
}

// ---------------------------------------------------------------- the checker

/// A throwaway crate: `files` are (path below src/, text).
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Graph) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let graph = build_graph(dir.path(), "demo").unwrap_or_else(|e| panic!("{e}"));
    (dir, graph)
}

fn edge_set(graph: &Graph) -> BTreeSet<(String, String)> {
    graph
        .edges
        .iter()
        .flat_map(|(f, ts)| ts.keys().map(move |t| (f.clone(), t.clone())))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, b)| (format!("src/{a}"), format!("src/{b}")))
        .collect()
}

#[test]
fn checker_reports_a_known_circle_with_lines_and_paths() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "pub fn f() {\n    crate::b::g();\n}\n"),
        ("b.rs", "use crate::c::h;\npub fn g() { h() }\n"),
        ("c.rs", "pub fn h() {}\n\npub fn k() { super::a::f() }\n"),
    ]);
    assert_eq!(
        edge_set(&g),
        pairs(&[("a.rs", "b.rs"), ("b.rs", "c.rs"), ("c.rs", "a.rs")])
    );
    assert_eq!(circles(&g), vec![vec!["src/a.rs", "src/b.rs", "src/c.rs"]]);
    let report = rule1_violations(&g).join("\n");
    assert!(
        report.contains("src/a.rs -> src/b.rs -> src/c.rs -> src/a.rs"),
        "{report}"
    );
    assert!(report.contains("src/a.rs:2 `crate::b::g`"), "{report}");
    assert!(report.contains("src/b.rs:1 `crate::c::h`"), "{report}");
    assert!(report.contains("src/c.rs:3 `super::a::f`"), "{report}");
}

#[test]
fn checker_passes_a_clean_tree_and_ignores_declarations() {
    let (_d, g) = tree(&[
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub fn run() { a::f(); b::g(); }\n",
        ),
        ("a.rs", "pub fn f() { crate::b::g() }\n"),
        (
            "b.rs",
            "pub fn g() { let v = std::vec::Vec::<u8>::new(); drop(v); }\n",
        ),
    ]);
    assert_eq!(
        edge_set(&g),
        pairs(&[("lib.rs", "a.rs"), ("lib.rs", "b.rs"), ("a.rs", "b.rs")])
    );
    assert!(rule1_violations(&g).is_empty());
    assert!(rule2_violations(&g).is_empty());
}

#[test]
fn checker_reads_grouped_renamed_and_glob_imports() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n"),
        (
            "a.rs",
            "use crate::{\n    b::{self, X},\n    c::*,\n};\nuse crate::d as dee;\nuse super::e::Y as _;\n",
        ),
        ("b.rs", "pub struct X;\n"),
        ("c.rs", ""),
        ("d.rs", ""),
        ("e.rs", "pub trait Y {}\n"),
    ]);
    assert_eq!(
        edge_set(&g),
        pairs(&[
            ("a.rs", "b.rs"),
            ("a.rs", "c.rs"),
            ("a.rs", "d.rs"),
            ("a.rs", "e.rs")
        ])
    );
    assert_eq!(g.sites("src/a.rs", "src/b.rs")[0].line, 2);
    assert_eq!(g.sites("src/a.rs", "src/c.rs")[0].text, "crate::c::*");
}

#[test]
fn checker_treats_an_inline_test_module_as_its_file() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod ops;\npub mod b;\n"),
        ("ops/mod.rs", "pub mod promote;\n"),
        (
            "ops/promote.rs",
            "pub fn run() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::super::b::helper;\n    #[test]\n    fn t() { run(); self::inner::x(); helper(); }\n    mod inner { pub fn x() { super::super::run() } }\n}\n",
        ),
        ("b.rs", "pub fn helper() {}\n"),
    ]);
    // `super` in the test module is promote.rs itself (no self-edge); three
    // supers climb to the crate root, then `b`.
    assert_eq!(edge_set(&g), pairs(&[("ops/promote.rs", "b.rs")]));
    assert_eq!(g.sites("src/ops/promote.rs", "src/b.rs")[0].line, 5);
}

#[test]
fn checker_follows_child_modules_imported_modules_and_macros() {
    let (_d, g) = tree(&[
        (
            "lib.rs",
            "pub mod ops;\npub mod log;\npub mod fmt;\npub mod k;\npub mod m;\npub fn run() { ops::promote::run() }\n",
        ),
        ("ops/mod.rs", "pub mod promote;\npub mod cleanup;\n"),
        (
            "ops/promote.rs",
            "use crate::ops;\npub fn run() {\n    ops::cleanup::sweep();\n    println!(\"{}\", crate::fmt::show());\n    crate::log::say!();\n    tracing::info!(v = %crate::k::show(), \"x\");\n}\n",
        ),
        ("ops/cleanup.rs", "pub fn sweep() {}\n"),
        (
            "log.rs",
            "#[macro_export]\nmacro_rules! say { () => { $crate::m::noop() } }\n",
        ),
        ("k.rs", "pub fn show() -> u8 { 2 }\n"),
        ("m.rs", "pub fn noop() {}\n"),
        ("fmt.rs", "pub fn show() -> u8 { 1 }\n"),
        ("main.rs", "fn main() { demo::run(); let _ = demo::ops::promote::run; }\n"),
    ]);
    assert_eq!(
        edge_set(&g),
        pairs(&[
            ("lib.rs", "ops/promote.rs"),
            ("ops/promote.rs", "ops/mod.rs"),
            ("ops/promote.rs", "ops/cleanup.rs"),
            ("ops/promote.rs", "fmt.rs"),
            ("ops/promote.rs", "log.rs"),
            ("ops/promote.rs", "k.rs"),
            ("log.rs", "m.rs"),
            ("main.rs", "lib.rs"),
            ("main.rs", "ops/promote.rs"),
        ])
    );
    assert_eq!(
        g.sites("src/ops/promote.rs", "src/ops/cleanup.rs")[0].line,
        3
    );
    assert_eq!(g.sites("src/ops/promote.rs", "src/fmt.rs")[0].line, 4);
    // Read from the macro's tokens: `v = %expr` is no expression list.
    assert_eq!(g.sites("src/ops/promote.rs", "src/k.rs")[0].line, 6);
    assert_eq!(g.sites("src/log.rs", "src/m.rs")[0].text, "crate::m::noop");
}

#[test]
fn checker_enforces_that_operations_do_not_reach_each_other() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod ops;\npub mod switch;\n"),
        (
            "ops/mod.rs",
            "pub mod promote;\npub mod rollback;\npub struct Ctx;\nuse crate::switch::Flip;\n",
        ),
        (
            "ops/promote.rs",
            "pub fn run(_: &super::Ctx) { crate::switch::flip() }\n",
        ),
        (
            "ops/rollback.rs",
            "pub fn run() {\n    super::promote::run(&super::Ctx)\n}\n",
        ),
        ("switch.rs", "pub struct Flip;\npub fn flip() {}\n"),
    ]);
    let report = rule2_violations(&g);
    assert_eq!(report.len(), 4, "{report:#?}");
    let all = report.join("\n");
    assert!(
        all.contains("src/ops/mod.rs only declares the operations but reaches src/switch.rs: src/ops/mod.rs:4 `crate::switch::Flip`"),
        "{all}"
    );
    assert!(
        all.contains("operation src/ops/rollback.rs reaches src/ops/promote.rs: src/ops/rollback.rs:2 `super::promote::run`"),
        "{all}"
    );
    assert!(
        all.contains("operation src/ops/promote.rs reaches src/ops/mod.rs"),
        "{all}"
    );
    assert!(
        all.contains("operation src/ops/rollback.rs reaches src/ops/mod.rs"),
        "{all}"
    );
    // Through the shared switch module is fine and no circle exists.
    assert!(
        !all.contains("reaches src/switch.rs: src/ops/promote.rs"),
        "{all}"
    );
    assert!(
        rule1_violations(&g).is_empty(),
        "{:?}",
        rule1_violations(&g)
    );
}

#[test]
fn checker_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "#[path = \"x/y.rs\"]\nmod y;\n").expect("write");
    let err = build_graph(dir.path(), "demo").expect_err("#[path] is refused");
    assert!(err.contains("src/lib.rs:1: `#[path]`"), "{err}");
    std::fs::write(src.join("lib.rs"), "fn broken( {\n").expect("write");
    let err = build_graph(dir.path(), "demo").expect_err("a parse error is refused");
    assert!(err.contains("could not parse src/lib.rs"), "{err}");
    std::fs::write(src.join("lib.rs"), "pub fn f() {\n    mod m {}\n}\n").expect("write");
    let err = build_graph(dir.path(), "demo").expect_err("a mod in a fn is refused");
    assert!(
        err.contains("src/lib.rs:2: `mod m` inside a function body"),
        "{err}"
    );
}

/// No decisions on text in src/ (a rule of its own, beside the file graph).
mod strings;
