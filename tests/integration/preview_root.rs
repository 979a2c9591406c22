//! A preview's own root (`previews/<slug>/`), through real `git push`, with
//! a Makefile that links and copies the seed's way: relative paths from the
//! release (`cp ../../common/...`, `ln -sfn ../../../../../common/...`).
//! Production's `common/` must come out of every preview push, update and
//! removal byte for byte the same; old-layout previews move over with their
//! data.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{ok, text, Env, MAKEFILE, TEST_CONFIG};

/// The seed's production-links, as `make production-links` runs it in the
/// release directory.
const SEED_LINKS: &str = "\
production-links:
\techo \"links $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)
\tmkdir -p www/webs/1
\tln -sfn ../../../../../common/www/webs/1/exports ./www/webs/1/exports
\tcp ../../common/app-cz/config/local.neon app-cz/config/local.neon
";

fn makefile() -> String {
    MAKEFILE.replace(
        "production-links:\n\techo \"links $$SYMDEPLOY_STAGE $$PWD\" >> $(TRACE)\n",
        SEED_LINKS,
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Every entry under `dir`: path -> what it is (file content, link target,
/// directory), without following symlinks.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &p, out);
            } else {
                out.insert(rel, format!("file {:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Production promoted on main with the seed-style Makefile, its own data in
/// common/ (the production config, exports), a seed for previews, and the
/// branch feature/x checked out.
fn scene() -> Env {
    let env = Env::with_config(&format!(
        "{TEST_CONFIG}[previews]\nbranches = \"feature/*\"\nseed = \"previews-seed\"\n"
    ));
    let common = env.root.join("common");
    std::fs::create_dir_all(common.join("app-cz/config")).unwrap();
    std::fs::write(
        common.join("app-cz/config/local.neon"),
        "database: production password=secret\n",
    )
    .unwrap();
    std::fs::create_dir_all(common.join("www/webs/1/exports")).unwrap();
    std::fs::write(common.join("www/webs/1/exports/feed.xml"), "<prod/>\n").unwrap();
    let seed = env.root.join("previews-seed");
    std::fs::create_dir_all(seed.join("app-cz/config")).unwrap();
    std::fs::write(seed.join("app-cz/config/local.neon"), "database: preview\n").unwrap();
    std::fs::create_dir_all(seed.join("www/webs/1/exports")).unwrap();
    env.write("Makefile", &makefile());
    env.write("app-cz/config/.gitkeep", "");
    env.commit("seed-style links");
    env.push_ok(&["main"]);
    ok(&env.symdeploy(&["promote"]));
    // Production's own build used production's data, as it should.
    assert_eq!(
        read(&env.root.join("production/app-cz/config/local.neon")),
        "database: production password=secret\n"
    );
    env.git(&["checkout", "-q", "-b", "feature/x"]);
    env
}

#[test]
fn seed_style_relative_paths_stay_inside_the_preview_root() {
    let env = scene();
    let before = snapshot(&env.root.join("common"));
    assert!(
        before.contains_key("app-cz/config/local.neon"),
        "{before:?}"
    );

    env.write("www/index.html", "feature x\n");
    env.commit("feature x");
    let t = env.push_ok(&["feature/x"]);
    assert!(
        t.contains("previews/feature-x/production -> releases/"),
        "{t}"
    );
    let preview = env.root.join("previews/feature-x");
    // The mirror of the deploy root.
    assert!(preview.join("releases").is_dir());
    assert!(preview.join("common").is_dir());
    assert_eq!(
        std::fs::read_link(preview.join("www")).unwrap(),
        Path::new("production/www")
    );
    assert_eq!(read(&preview.join("www/index.html")), "feature x\n");
    // The copied config is the preview's, not production's credentials.
    assert_eq!(
        read(&preview.join("production/app-cz/config/local.neon")),
        "database: preview\n"
    );
    // The seed-style link resolves under previews/feature-x/.
    let exports = std::fs::canonicalize(preview.join("production/www/webs/1/exports")).unwrap();
    let own = std::fs::canonicalize(preview.join("common")).unwrap();
    assert!(exports.starts_with(&own), "{}", exports.display());
    for shared in ["log", "www/data/images"] {
        let real = std::fs::canonicalize(preview.join("production").join(shared)).unwrap();
        assert!(real.starts_with(&own), "{shared}: {}", real.display());
    }
    assert_eq!(snapshot(&env.root.join("common")), before, "after the push");

    // An update, and a write through the preview's links.
    std::fs::write(preview.join("www/webs/1/exports/feed.xml"), "<preview/>\n").unwrap();
    env.write("www/index.html", "feature x v2\n");
    env.commit("feature x v2");
    env.push_ok(&["feature/x"]);
    assert_eq!(read(&preview.join("www/index.html")), "feature x v2\n");
    assert_eq!(
        read(&preview.join("common/www/webs/1/exports/feed.xml")),
        "<preview/>\n"
    );
    assert_eq!(
        snapshot(&env.root.join("common")),
        before,
        "after the update"
    );
    // Production serves what it served.
    assert_eq!(
        read(&env.root.join("www/webs/1/exports/feed.xml")),
        "<prod/>\n"
    );

    // Removal: the preview stops being served, its data stays, production's
    // common/ is untouched.
    let t = env.push_ok(&[":feature/x"]);
    assert!(t.contains("preview feature-x removed"), "{t}");
    assert!(std::fs::symlink_metadata(preview.join("production")).is_err());
    assert!(std::fs::symlink_metadata(preview.join("www")).is_err());
    assert_eq!(
        read(&preview.join("common/app-cz/config/local.neon")),
        "database: preview\n"
    );
    assert_eq!(
        snapshot(&env.root.join("common")),
        before,
        "after the removal"
    );
    // With --data nothing of it is left, and still nothing of production's goes.
    env.git(&["checkout", "-q", "-b", "feature/y"]);
    env.push_ok(&["feature/y"]);
    ok(&env.symdeploy(&["preview", "rm", "--data", "feature-y"]));
    assert!(!env.root.join("previews/feature-y").exists());
    assert_eq!(
        snapshot(&env.root.join("common")),
        before,
        "after rm --data"
    );
}

/// Turn the new-layout preview `slug` (serving `commit`) into what older
/// versions left: releases/preview-<slug>-<commit> with shared links into
/// common-previews/<slug>/, and previews/<slug> a symlink to the release.
fn to_old_layout(env: &Env, slug: &str, commit: &str) {
    let dir = env.root.join("previews").join(slug);
    let old = env.root.join(format!("releases/preview-{slug}-{commit}"));
    std::fs::rename(dir.join("releases").join(commit), &old).unwrap();
    std::fs::create_dir_all(env.root.join("common-previews")).unwrap();
    std::fs::rename(
        dir.join("common"),
        env.root.join("common-previews").join(slug),
    )
    .unwrap();
    for (path, target) in [
        ("log", format!("../../common-previews/{slug}/log")),
        (
            "www/data/images",
            format!("../../../../common-previews/{slug}/www/data/images"),
        ),
    ] {
        let p = old.join(path);
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(format!("../releases/preview-{slug}-{commit}"), &dir).unwrap();
    // The old layout serves: previews/<slug>/www is the release's www.
    assert!(dir.join("www/index.html").is_file());
    assert!(dir.join("log/tester.txt").is_file());
}

#[test]
fn old_layout_previews_move_over_with_their_data() {
    let env = scene();
    let before = snapshot(&env.root.join("common"));
    env.write("www/index.html", "feature x\n");
    let c = env.commit("feature x");
    env.push_ok(&["feature/x"]);
    let preview = env.root.join("previews/feature-x");
    std::fs::write(preview.join("production/log/tester.txt"), "uploaded\n").unwrap();
    to_old_layout(&env, "feature-x", &c);
    let out = env.symdeploy(&["check"]);
    assert!(text(&out).contains("old layout"), "{}", text(&out));

    // `symdeploy recover` moves it: data, release, served pointer.
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(
        t.contains("preview feature-x now lives in previews/feature-x/"),
        "{t}"
    );
    assert!(!std::fs::symlink_metadata(&preview)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(preview.join("production")).unwrap(),
        Path::new(&format!("releases/{c}"))
    );
    assert_eq!(read(&preview.join("www/index.html")), "feature x\n");
    assert_eq!(read(&preview.join("common/log/tester.txt")), "uploaded\n");
    // The release's shared links follow the data.
    assert_eq!(
        read(&preview.join("production/log/tester.txt")),
        "uploaded\n"
    );
    assert!(!env.root.join("common-previews").exists());
    assert!(!env
        .root
        .join(format!("releases/preview-feature-x-{c}"))
        .exists());
    assert_eq!(snapshot(&env.root.join("common")), before);
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("nothing to recover"), "{t}");
    let t = text(&env.symdeploy(&["check"]));
    assert!(!t.contains("old layout"), "{t}");

    // Old layout again; this time the next push moves it over.
    to_old_layout(&env, "feature-x", &c);
    env.write("www/index.html", "feature x v2\n");
    env.commit("feature x v2");
    let t = env.push_ok(&["feature/x"]);
    assert!(t.contains("now lives in previews/feature-x/"), "{t}");
    assert_eq!(read(&preview.join("www/index.html")), "feature x v2\n");
    assert_eq!(
        read(&preview.join("production/log/tester.txt")),
        "uploaded\n"
    );
    // The old release went once the new one served.
    let rels: Vec<_> = std::fs::read_dir(preview.join("releases"))
        .unwrap()
        .collect();
    assert_eq!(rels.len(), 1);
    assert!(!env
        .root
        .join(format!("releases/preview-feature-x-{c}"))
        .exists());
    assert_eq!(snapshot(&env.root.join("common")), before);
}

#[test]
fn a_removed_old_layout_preview_keeps_its_data() {
    let env = scene();
    let c = env.commit("feature x");
    env.push_ok(&["feature/x"]);
    let preview = env.root.join("previews/feature-x");
    std::fs::write(preview.join("production/log/tester.txt"), "uploaded\n").unwrap();
    to_old_layout(&env, "feature-x", &c);
    // Removal of an old-layout preview moves it first, so its data lands in
    // its own root and nothing is left in releases/.
    let t = ok(&env.symdeploy(&["preview", "rm", "feature-x"]));
    assert!(t.contains("preview feature-x removed"), "{t}");
    assert_eq!(read(&preview.join("common/log/tester.txt")), "uploaded\n");
    assert!(std::fs::symlink_metadata(preview.join("production")).is_err());
    assert!(!env
        .root
        .join(format!("releases/preview-feature-x-{c}"))
        .exists());
    assert!(!env.root.join("common-previews").exists());
}

#[test]
fn check_warns_about_absolute_paths_into_productions_data() {
    let env = Env::with_config(&format!(
        "{TEST_CONFIG}[previews]\nbranches = \"feature/*\"\nlinks = [\"cp $SYMDEPLOY_ROOT/common/app/local.neon app/\"]\n"
    ));
    let t = text(&env.symdeploy(&["check"]));
    assert!(
        t.contains("previews.links") && t.contains("production's data"),
        "{t}"
    );
    let fine = Env::new();
    let t = text(&fine.symdeploy(&["check"]));
    assert!(!t.contains("production's data"), "{t}");
}

#[test]
fn a_move_cut_short_is_finished_by_recover() {
    let env = scene();
    let before = snapshot(&env.root.join("common"));
    let c = env.commit("feature x");
    env.push_ok(&["feature/x"]);
    let preview = env.root.join("previews/feature-x");
    std::fs::write(preview.join("production/log/tester.txt"), "uploaded\n").unwrap();
    to_old_layout(&env, "feature-x", &c);
    // What a kill after the data and the release moved leaves: both in the
    // staging root, the old symlink dangling.
    let stage = env.root.join("previews/.layout-feature-x");
    std::fs::create_dir_all(stage.join("releases")).unwrap();
    std::fs::rename(
        env.root.join("common-previews/feature-x"),
        stage.join("common"),
    )
    .unwrap();
    std::fs::rename(
        env.root.join(format!("releases/preview-feature-x-{c}")),
        stage.join("releases").join(&c),
    )
    .unwrap();
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("now lives in previews/feature-x/"), "{t}");
    assert!(!stage.exists(), "the staging root took the preview's place");
    assert_eq!(read(&preview.join("www/index.html")), "hello\n");
    assert_eq!(read(&preview.join("common/log/tester.txt")), "uploaded\n");
    assert_eq!(
        read(&preview.join("production/log/tester.txt")),
        "uploaded\n"
    );
    assert_eq!(snapshot(&env.root.join("common")), before);
    // A second recover has nothing left to do.
    let t = ok(&env.symdeploy(&["recover"]));
    assert!(t.contains("nothing to recover"), "{t}");
}
