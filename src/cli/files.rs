//! Which files a run reads, and the folders it writes.

use super::problems::Problems;
use anyhow::{bail, Context, Result};
use dermscreen::dataset::IMAGE_EXTENSIONS;
use std::path::{Path, PathBuf};

/// Pictures people have that the app does not read: in a folder they are tried too, so each
/// gets its own reason instead of being passed over in silence.
const OTHER_IMAGE_EXTENSIONS: [&str; 8] = ["gif", "bmp", "tif", "tiff", "heic", "heif", "avif", "dng"];

fn extension_in(f: &Path, list: &[&str]) -> bool {
    f.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| list.contains(&x.to_ascii_lowercase().as_str()))
}

/// Explicit files are always tried; folders contribute files with image extensions, and a
/// folder with no JPEG, PNG or WebP file in it is a problem, not silence. Links are followed
/// (a folder of links to photos is a common way to pick a set), and a link loop is reported.
/// Inside a folder given, hidden files and folders are passed over, as ripgrep does: a
/// phone's camera folder holds a thumbnail of each photo (`.thumbnails/`) and macOS leaves a
/// `._` file beside each, neither a photo of its own. So is `output`, where this run writes
/// images (`--saliency`): its overlays are not photos.
pub(crate) fn collect_files(paths: &[PathBuf], output: Option<&Path>, problems: &mut Problems) -> Vec<PathBuf> {
    let output = output.and_then(|o| std::fs::canonicalize(o).ok());
    let not_read = |e: &walkdir::DirEntry| {
        let is_output = || e.file_type().is_dir() && output.is_some() && std::fs::canonicalize(e.path()).ok() == output;
        e.depth() > 0 && (e.file_name().to_string_lossy().starts_with('.') || is_output())
    };
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut found = Vec::new();
            let (mut usable, mut passed_over) = (0, 0);
            for entry in walkdir::WalkDir::new(p).follow_links(true).into_iter().filter_entry(|e| !not_read(e)) {
                match entry {
                    Ok(e) if !e.file_type().is_file() => {}
                    Ok(e) if extension_in(e.path(), &IMAGE_EXTENSIONS) => {
                        usable += 1;
                        found.push(e.into_path());
                    }
                    Ok(e) if extension_in(e.path(), &OTHER_IMAGE_EXTENSIONS) => found.push(e.into_path()),
                    Ok(_) => passed_over += 1,
                    Err(err) => problems.report(walk_error(p, &err)),
                }
            }
            if usable == 0 {
                let others = if passed_over > 0 { format!(" ({passed_over} other files passed over)") } else { String::new() };
                problems.report(format_args!("{}: no JPEG, PNG or WebP photo in this folder{others}", p.display()));
            }
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            problems.report(format_args!("{}: no such file or folder", p.display()));
        }
    }
    files
}

/// A folder walk's problem, named by the path it is about rather than the folder given: a
/// link to a photo since moved or deleted, a link back up the tree, a folder not readable.
fn walk_error(root: &Path, err: &walkdir::Error) -> String {
    match (err.path(), err.loop_ancestor(), err.io_error()) {
        (Some(path), Some(ancestor), _) => {
            format!("{}: a link back to {}, which is being read already (passed over)", path.display(), ancestor.display())
        }
        (Some(path), _, Some(io)) if io.kind() == std::io::ErrorKind::NotFound && path.is_symlink() => {
            format!("{}: a broken link (what it points to does not exist)", path.display())
        }
        (Some(path), _, Some(io)) => format!("{}: {io}", path.display()),
        _ => format!("{}: {err}", root.display()),
    }
}

/// The path that stands for standard input (`curl ... | dermscreen classify -`); a file of
/// that name is `./-`.
const STDIN: &str = "-";

/// The bytes of the photo at `path`. Standard input is read once and kept: `--saliency`
/// decodes a photo a second time.
pub(crate) fn read_photo(path: &Path) -> std::io::Result<Vec<u8>> {
    static PIPED: std::sync::OnceLock<Result<Vec<u8>, std::io::ErrorKind>> = std::sync::OnceLock::new();
    if path.as_os_str() != STDIN {
        return std::fs::read(path);
    }
    let piped = PIPED.get_or_init(|| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes).map_err(|e| e.kind())
    });
    piped.clone().map_err(|kind| std::io::Error::new(kind, "reading standard input"))
}

/// Creates the folder `option` names for what a run writes (`holds`), after [`not_a_file`].
pub(crate) fn output_folder(dir: &Path, option: &str, holds: &str) -> Result<()> {
    not_a_file(dir, option, holds)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {} ({option})", dir.display()))
}

/// A file where `option` wants a folder for `holds` is named, with what the option takes.
pub(crate) fn not_a_file(dir: &Path, option: &str, holds: &str) -> Result<()> {
    if dir.is_file() {
        bail!("{} is a file: {option} takes a folder, for {holds}", dir.display());
    }
    Ok(())
}
