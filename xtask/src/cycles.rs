//! `cargo xtask cycles`: import cycles between the files of each workspace crate.
//!
//! A file *uses* another when a path it writes (in a `use`, an expression, a type, a pattern
//! or a macro's tokens) resolves to an item or module that the other file defines. Paths are
//! resolved as rustc does for the cases this workspace writes: `crate::`, `super::`, `self::`,
//! names bound by `use` (followed through re-exports and globs), child modules (file or
//! inline), and items. A use of an *ancestor* module (a child reading what its parent
//! defines, as `super::Output`) is not an edge: a parent is the namespace its children live
//! in, and forbidding that would forbid `mod.rs` files. Every other edge counts, so two
//! siblings, or two unrelated modules, may not use each other, directly or through others.
//!
//! Test code (`#[cfg(test)]` modules, `tests.rs` files declared under `cfg(test)`) is left
//! out: tests may reach anywhere. Prints each cycle as its files; fails when there is one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A crate to check: its root file.
struct CrateRoot {
    root: PathBuf,
}

/// One module: the file it lives in, its children, what it defines and what it imports.
#[derive(Default)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
    items: BTreeSet<String>,
    /// `use` bindings: the name in this module → the path it stands for.
    imports: HashMap<String, Vec<String>>,
    /// `use path::*`.
    globs: Vec<Vec<String>>,
    /// Paths written in this module (outside nested modules), to resolve into edges.
    references: Vec<Vec<String>>,
}

/// Module path (`["jobspec", "eval"]`) → module.
type Tree = BTreeMap<Vec<String>, Module>;

pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask cycles");
    }
    let cycles = find_all(&super::root())?;
    if cycles.is_empty() {
        eprintln!("==> no import cycles between files");
        return Ok(());
    }
    for cycle in &cycles {
        eprintln!("import cycle: {}", cycle.join(" → "));
    }
    bail!(
        "{} import cycle(s) between files: move what both sides need into a module of its own, or into the parent",
        cycles.len()
    )
}

/// Every cycle in every crate of the workspace at `root`, as lists of files relative to it.
pub fn find_all(root: &Path) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for krate in crate_roots()? {
        let tree = load_tree(&krate.root)?;
        for cycle in cycles(&tree) {
            let files: Vec<String> = cycle
                .iter()
                .map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string())
                .collect();
            out.push(files);
        }
    }
    Ok(out)
}

/// The root file of every library and binary of every workspace package.
fn crate_roots() -> Result<Vec<CrateRoot>> {
    let meta = super::metadata()?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut roots = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        if !members.contains(&package["id"].as_str().unwrap_or_default()) {
            continue;
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .map(|k| k.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if kinds
                .iter()
                .any(|k| matches!(*k, "lib" | "bin" | "proc-macro"))
            {
                if let Some(path) = target["src_path"].as_str() {
                    roots.push(CrateRoot {
                        root: PathBuf::from(path),
                    });
                }
            }
        }
    }
    Ok(roots)
}

fn load_tree(root_file: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    load_file(&mut tree, Vec::new(), root_file, true)?;
    Ok(tree)
}

/// Parses `file` as module `path`; `owns_dir` is true for `lib.rs`, `main.rs` and `mod.rs`
/// (their children live beside them rather than in a directory named after them).
fn load_file(tree: &mut Tree, path: Vec<String>, file: &Path, owns_dir: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let syntax = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
    let dir = if owns_dir {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        file.parent().map(|p| p.join(stem)).unwrap_or_default()
    };
    load_items(tree, path, file, &dir, &syntax.items)
}

fn load_items(
    tree: &mut Tree,
    path: Vec<String>,
    file: &Path,
    dir: &Path,
    items: &[syn::Item],
) -> Result<()> {
    tree.entry(path.clone()).or_default().file = file.to_path_buf();
    for item in items {
        if is_test_only(item_attrs(item)) {
            continue;
        }
        match item {
            syn::Item::Mod(m) => {
                let name = m.ident.to_string();
                tree.entry(path.clone())
                    .or_default()
                    .children
                    .insert(name.clone());
                let mut child = path.clone();
                child.push(name.clone());
                if let Some((_, inner)) = &m.content {
                    load_items(tree, child, file, &dir.join(&name), inner)?;
                } else {
                    let explicit = m.attrs.iter().find_map(path_attr);
                    let (child_file, owns) = match explicit {
                        Some(p) => {
                            let f = dir.parent().unwrap_or(dir).join(p);
                            (f, false)
                        }
                        None if dir.join(format!("{name}.rs")).is_file() => {
                            (dir.join(format!("{name}.rs")), false)
                        }
                        None => (dir.join(&name).join("mod.rs"), true),
                    };
                    load_file(tree, child, &child_file, owns)?;
                }
            }
            syn::Item::Use(u) => {
                let mut bindings = Vec::new();
                flatten_use(&u.tree, Vec::new(), &mut bindings);
                let module = tree.entry(path.clone()).or_default();
                for (name, target) in bindings {
                    match name {
                        Some(n) => {
                            module.imports.insert(n, target.clone());
                        }
                        None => module.globs.push(target.clone()),
                    }
                    module.references.push(target);
                }
            }
            other => {
                if let Some(name) = item_name(other) {
                    tree.entry(path.clone()).or_default().items.insert(name);
                }
                let mut collector = PathCollector::default();
                collector.visit_item(other);
                tree.entry(path.clone())
                    .or_default()
                    .references
                    .extend(collector.paths);
            }
        }
    }
    Ok(())
}

fn path_attr(attr: &syn::Attribute) -> Option<String> {
    if !attr.path().is_ident("path") {
        return None;
    }
    match &attr.meta {
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]` (alone, not `cfg(any(test, …))`).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

/// A `use` tree as (bound name or `None` for a glob, full path) pairs.
fn flatten_use(
    tree: &syn::UseTree,
    prefix: Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix;
            next.push(p.ident.to_string());
            flatten_use(&p.tree, next, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last().cloned() {
                    out.push((Some(last), prefix));
                }
            } else {
                let mut full = prefix;
                full.push(name.clone());
                out.push((Some(name), full));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix;
            let name = r.ident.to_string();
            if name != "self" {
                full.push(name);
            }
            out.push((Some(r.rename.to_string()), full));
        }
        syn::UseTree::Glob(_) => out.push((None, prefix)),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix.clone(), out);
            }
        }
    }
}

/// Every path written inside an item, including those in macro tokens (`crate::a::b`).
#[derive(Default)]
struct PathCollector {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.paths.push(segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Nested modules are loaded as modules of their own.
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        // A `use` inside a function body.
        let mut bindings = Vec::new();
        flatten_use(&u.tree, Vec::new(), &mut bindings);
        self.paths.extend(bindings.into_iter().map(|(_, p)| p));
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        scan_tokens(mac.tokens.clone(), &mut self.paths);
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

/// Paths of the form `a::b::c` in a token stream.
fn scan_tokens(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        match &trees[i] {
            TokenTree::Group(g) => {
                scan_tokens(g.stream(), out);
                i += 1;
            }
            TokenTree::Ident(first) => {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                loop {
                    let colons = matches!((&trees.get(j), &trees.get(j + 1)),
                        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':');
                    match (colons, trees.get(j + 2)) {
                        (true, Some(TokenTree::Ident(next))) => {
                            path.push(next.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if path.len() > 1 {
                    out.push(path);
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
}

/// Bound on how many re-export hops a path may take (a loop of `pub use`s would not end).
const MAX_HOPS: usize = 32;

/// The file a path written in module `from` leads to, if it is inside this crate.
fn resolve(tree: &Tree, from: &[String], path: &[String], hops: usize) -> Option<PathBuf> {
    if hops > MAX_HOPS || path.is_empty() {
        return None;
    }
    let (mut module, rest): (Vec<String>, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.to_vec(), &path[1..]),
        "super" => {
            let mut m = from.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                m.pop();
                rest = &rest[1..];
            }
            (m, rest)
        }
        _ => (from.to_vec(), path),
    };
    let mut rest = rest;
    // The first segment of a relative path may be a name bound in `from` (or nothing local:
    // another crate, std, a prelude name).
    let relative = !matches!(path[0].as_str(), "crate" | "self" | "super");
    loop {
        let current = tree.get(&module)?;
        let Some(segment) = rest.first() else {
            return Some(current.file.clone());
        };
        if current.children.contains(segment) {
            module.push(segment.clone());
            rest = &rest[1..];
            continue;
        }
        if let Some(target) = current.imports.get(segment) {
            let mut full = target.clone();
            full.extend(rest[1..].iter().cloned());
            return resolve(tree, &module, &full, hops + 1);
        }
        if current.items.contains(segment) {
            return Some(current.file.clone());
        }
        for glob in &current.globs {
            let mut full = glob.clone();
            full.extend(rest.iter().cloned());
            if let Some(file) = resolve(tree, &module, &full, hops + 1) {
                if file != current.file {
                    return Some(file);
                }
            }
        }
        if relative && module == from {
            // Not a local name: another crate or the prelude.
            return None;
        }
        // A method, variant or associated item of something defined here.
        return Some(current.file.clone());
    }
}

/// Edges file → file, without uses of an ancestor module's file.
fn edges(tree: &Tree) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut out: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, module) in tree {
        let ancestors: BTreeSet<&PathBuf> = (0..path.len())
            .filter_map(|n| tree.get(&path[..n]).map(|m| &m.file))
            .collect();
        for reference in &module.references {
            let Some(target) = resolve(tree, path, reference, 0) else {
                continue;
            };
            if target == module.file || ancestors.contains(&target) {
                continue;
            }
            out.entry(module.file.clone()).or_default().insert(target);
        }
    }
    out
}

/// Strongly connected components of more than one file (Tarjan), each sorted.
fn cycles(tree: &Tree) -> Vec<Vec<PathBuf>> {
    let graph = edges(tree);
    let nodes: BTreeSet<PathBuf> = graph
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    let index_of: HashMap<&PathBuf, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let names: Vec<&PathBuf> = nodes.iter().collect();
    let adjacency: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            graph
                .get(*n)
                .map(|bs| bs.iter().map(|b| index_of[b]).collect())
                .unwrap_or_default()
        })
        .collect();
    let mut tarjan = Tarjan {
        adjacency: &adjacency,
        index: vec![None; names.len()],
        low: vec![0; names.len()],
        on_stack: vec![false; names.len()],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in 0..names.len() {
        if tarjan.index[v].is_none() {
            tarjan.connect(v);
        }
    }
    let mut out: Vec<Vec<PathBuf>> = tarjan
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut files: Vec<PathBuf> = c.into_iter().map(|i| names[i].clone()).collect();
            files.sort();
            files
        })
        .collect();
    out.sort();
    out
}

struct Tarjan<'a> {
    adjacency: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn connect(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.adjacency[v] {
            match self.index[w] {
                None => {
                    self.connect(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn cycles_in(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files);
        let tree = load_tree(&dir.path().join("lib.rs")).unwrap();
        cycles(&tree)
            .into_iter()
            .map(|c| {
                c.iter()
                    .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn siblings_that_use_each_other_are_a_cycle() {
        let found = cycles_in(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "pub fn f() { crate::b::g() }"),
            ("b.rs", "use super::a; pub fn g() { a::f() }"),
        ]);
        assert_eq!(found, vec![vec!["a.rs".to_string(), "b.rs".to_string()]]);
    }

    #[test]
    fn a_cycle_through_a_reexport_and_a_macro_is_found() {
        let found = cycles_in(&[
            ("lib.rs", "mod m; mod n;"),
            ("m/mod.rs", "mod x; pub use x::X;"),
            (
                "m/x.rs",
                "pub struct X; fn f() { println!(\"{}\", crate::n::Y); }",
            ),
            ("n.rs", "pub const Y: u8 = 1; fn g(_: crate::m::X) {}"),
        ]);
        assert_eq!(found, vec![vec!["m/x.rs".to_string(), "n.rs".to_string()]]);
    }

    #[test]
    fn a_child_using_its_parent_and_test_code_are_not_cycles() {
        let found = cycles_in(&[
            ("lib.rs", "mod p;"),
            (
                "p/mod.rs",
                "mod c; pub struct Out; pub fn run() { c::go() }",
            ),
            ("p/c.rs", "use super::Out; pub fn go() { let _ = Out; }"),
            ("lib2.rs", ""),
        ]);
        assert!(found.is_empty(), "{found:?}");
        let found = cycles_in(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "pub fn f() { crate::b::g() }"),
            (
                "b.rs",
                "pub fn g() {}\n#[cfg(test)]\nmod tests { fn t() { crate::a::f() } }",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }
}
