//! Forbidden patterns in the tree. Also runs as a `#[test]` (see `xtask/tests/tidy.rs`).
//!
//! - `unsafe` code only under `crates/aegis-cuda/src/raw/` (**Rationale**: one small module to
//!   audit, as in cudarc's `result.rs`), and every unsafe block or impl preceded by a
//!   `// SAFETY:` comment.
//! - no parked or unfinished work: the ignore attribute, `todo!` and `unimplemented!`.

use std::path::{Path, PathBuf};

/// The one directory allowed to hold `unsafe`.
pub const UNSAFE_HOME: &str = "crates/aegis-cuda/src/raw/";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() {
            if !matches!(name, "target" | ".git" | ".gpu-bin") && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Removes `//` comments and the contents of simple string literals, so words in prose do
/// not count as code.
fn code_part(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        if c == '"' && prev != '\\' {
            in_str = !in_str;
            out.push('"');
        } else if !in_str {
            out.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        i += 1;
    }
    out
}

fn is_unsafe_code(code: &str) -> bool {
    let words = [
        "unsafe {",
        "unsafe{",
        "unsafe fn",
        "unsafe impl",
        "unsafe trait",
        "unsafe extern",
    ];
    words.iter().any(|w| code.contains(w)) || code.contains(&["allow(", "unsafe_code)"].concat())
}

fn needs_safety_comment(code: &str) -> bool {
    ["unsafe {", "unsafe{", "unsafe impl"]
        .iter()
        .any(|w| code.contains(w))
}

/// Checks one file's text; `rel` is its path relative to the repository root.
pub fn check_text(rel: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let forbidden = [
        ["#[ig", "nore"].concat(),
        ["to", "do!("].concat(),
        ["unimpl", "emented!("].concat(),
    ];
    let lines: Vec<&str> = text.lines().collect();
    let rel_unix = rel.replace('\\', "/");
    for (i, line) in lines.iter().enumerate() {
        let code = code_part(line);
        for f in &forbidden {
            if code.contains(f.as_str()) {
                problems.push(format!("{rel}:{}: forbidden `{f}`", i + 1));
            }
        }
        if is_unsafe_code(&code) {
            if !rel_unix.starts_with(UNSAFE_HOME) {
                problems.push(format!(
                    "{rel}:{}: unsafe code outside {UNSAFE_HOME}",
                    i + 1
                ));
            } else if needs_safety_comment(&code) {
                // The comment may sit on the same line or in the comment block just above.
                let mut ok = line.contains("SAFETY:");
                let mut j = i;
                while !ok && j > 0 {
                    j -= 1;
                    let t = lines[j].trim();
                    if t.starts_with("//") {
                        ok = t.contains("SAFETY:");
                    } else if !(t.is_empty()
                        || t.starts_with("#[")
                        || t.ends_with(['=', '(', ',', '{']))
                    {
                        // Anything but a comment, an attribute or the start of the same
                        // statement ends the search.
                        break;
                    }
                }
                if !ok {
                    problems.push(format!(
                        "{rel}:{}: unsafe without a `// SAFETY:` comment",
                        i + 1
                    ));
                }
            }
        }
    }
    problems
}

/// Every problem in the tree under `root`.
pub fn problems(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for top in ["crates", "xtask", "tests", "fuzz"] {
        rust_files(&root.join(top), &mut files);
    }
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        match std::fs::read_to_string(&f) {
            Ok(text) => out.extend(check_text(&rel, &text)),
            Err(e) => out.push(format!("{rel}: unreadable: {e}")),
        }
    }
    out
}

pub fn check(root: &Path) -> Result<(), String> {
    eprintln!("\n==> xtask: tidy");
    let p = problems(root);
    if p.is_empty() {
        eprintln!("tidy: clean");
        Ok(())
    } else {
        Err(format!(
            "tidy found {} problem(s):\n  {}",
            p.len(),
            p.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_unsafe_outside_home_and_missing_safety() {
        let u = ["uns", "afe {"].concat();
        assert_eq!(
            check_text(
                "crates/aegis-exec/src/a.rs",
                &format!("fn f() {{ {u} }} }}")
            )
            .len(),
            1
        );
        let home = "crates/aegis-cuda/src/raw/host.rs";
        assert_eq!(check_text(home, &format!("let x = {u} 1 }};")).len(), 1);
        assert!(check_text(home, &format!("// SAFETY: fine\nlet x = {u} 1 }};")).is_empty());
        assert!(check_text(
            home,
            &format!("// SAFETY: fine\n// more\nlet x =\n    {u} 1 }};")
        )
        .is_empty());
    }

    #[test]
    fn flags_parked_work_but_not_prose() {
        let t = ["to", "do!()"].concat();
        assert_eq!(check_text("a.rs", &format!("fn f() {{ {t} }}")).len(), 1);
        assert!(check_text("a.rs", &format!("// {t} in a comment")).is_empty());
        assert!(check_text("a.rs", &format!("let s = \"{t}\";")).is_empty());
        let ig = ["#[ig", "nore]"].concat();
        assert_eq!(check_text("a.rs", &ig).len(), 1);
    }
}
