//! Every place that names the file capabilities names the same set as
//! packaging/file-caps (which a unit test keeps equal to what the code
//! needs): the Debian postinst and the RPM spec's %caps.

use std::path::Path;

use crate::rig;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_packages_install_exactly_the_file_caps_set() {
    let _test = rig::need_nothing();
    let caps = read("packaging/file-caps").trim().to_string();
    assert!(caps.ends_with("=p"), "permitted only: {caps}");
    let postinst = read("packaging/deb/postinst");
    assert!(postinst.contains(&format!("caps='{caps}'")), "packaging/deb/postinst sets another set than {caps}");
    let spec = read("packaging/rpm/cagepipe.spec");
    let line = format!("%attr(0750,root,cagepipe) %caps({caps}) %{{_sbindir}}/cagepipe");
    assert!(spec.lines().any(|l| l == line), "cagepipe.spec's %files lacks `{line}`");
    for (name, text) in [("postinst", &postinst), ("cagepipe.spec", &spec)] {
        assert!(!text.contains("chmod u+s") && !text.contains("4750") && !text.contains("4755"), "{name} sets setuid");
    }
    // chown clears file capabilities, and %caps sets them: neither belongs
    // in a scriptlet.
    for line in spec.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(!line.contains("setcap") && !line.contains("chown"), "cagepipe.spec runs `{line}`");
    }
}
