//! The `dermscreen` command as a user runs it: output formats, folders, bad files, evaluate.
// Native only: these run the CLI and read files; `wasm-pack test` builds every test target for wasm32.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod malformed;

use std::path::{Path, PathBuf};
use dermscreen::dataset::Label;
use std::process::{Command, Output};

fn dermscreen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dermscreen"))
        .current_dir(common::root())
        .args(args)
        .output()
        .expect("run dermscreen")
}

fn held_out(n: usize) -> Vec<(String, String)> {
    common::validation_split().into_iter().step_by(97).take(n).collect()
}

fn copy_images(dir: &Path, ids: &[(String, String)]) -> Vec<PathBuf> {
    ids.iter()
        .map(|(id, _)| {
            let to = dir.join(format!("{id}.jpg"));
            std::fs::copy(common::image(id), &to).unwrap();
            to
        })
        .collect()
}

#[test]
fn csv_has_the_documented_header_and_probabilities() {
    let dir = common::temp_dir("csv");
    let ids = held_out(3);
    let files = copy_images(&dir, &ids[..2]);
    let out = dermscreen(&[
        "classify",
        "--format",
        "csv",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
        common::image(&ids[2].0).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "image", "gate", "lesion_score", "domain", "malignant", "high_risk", "diagnosis", "df", "vasc", "bkl", "nv", "akiec", "bcc", "scc", "mel",
            "benign", "benign_dermal", "benign_epidermal", "benign_melanocytic", "malignant", "malignant_epidermal",
            "malignant_melanocytic", "context_used", "path", "unsure"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][0], ids[0].0.as_str(), "image is the file name without extension");
    assert_eq!(&rows[0][23], files[0].to_str().unwrap(), "path is the path as given");
    for row in &rows {
        assert_eq!(&row[1], "ok", "a held-out lesion photo passes the gate");
        assert!(row[2].parse::<f64>().unwrap() > 0.0, "lesion score");
        assert_eq!(&row[3], "dermoscopic", "HAM10000 photos are taken for dermoscopic ones");
        assert!(matches!(&row[5], "true" | "false"));
        assert_eq!(&row[4], &row[19], "malignant is the malignant node's probability");
        assert!(["df", "vasc", "bkl", "nv", "akiec", "bcc", "scc", "mel"].contains(&&row[6]), "diagnosis is a class");
        assert_eq!(&row[22], "", "no context given");
        assert!(matches!(&row[24], "true" | "false"));
        assert!(row.iter().skip(7).take(15).all(|v| v.split('.').nth(1).is_some_and(|d| d.len() >= 4)), "4+ decimals: {row:?}");
        let v: Vec<f64> = row.iter().skip(7).take(15).map(|x| x.parse().unwrap()).collect();
        let classes: f64 = v[..8].iter().sum();
        assert!((classes - 1.0).abs() < 1e-3, "classes sum to {classes}");
        assert!((v[8] + v[12] - 1.0).abs() < 1e-3, "benign + malignant = 1");
        assert!((v[12] - (v[4] + v[5] + v[6] + v[7])).abs() < 1e-3, "malignant = akiec + bcc + scc + mel");
    }
}

#[test]
fn folders_are_walked_and_json_matches_csv() {
    let dir = common::temp_dir("walk");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    let ids = held_out(3);
    copy_images(&dir, &ids[..1]);
    copy_images(&dir.join("nested"), &ids[1..3]);
    std::fs::write(dir.join("notes.txt"), "not an image, and not picked up from a folder").unwrap();
    let json = dermscreen(&["classify", "--format", "json", dir.to_str().unwrap()]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let csv_out = dermscreen(&["classify", "--format", "csv", dir.to_str().unwrap()]);
    let text = String::from_utf8(csv_out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    for (row, rec) in rows.iter().zip(rdr.records()) {
        let rec = rec.unwrap();
        assert_eq!(row["image"].as_str().unwrap(), &rec[0]);
        let mel_json = row["classes"].as_array().unwrap().iter().find(|c| c["id"] == "mel").unwrap()["probability"]
            .as_f64()
            .unwrap();
        let mel_csv: f64 = rec[14].parse().unwrap();
        assert!((mel_json - mel_csv).abs() < 1e-5);
        assert!(row["malignant"].as_f64().is_some() && row["high_risk"].is_boolean());
        assert_eq!(row["gate"], "ok");
        assert_eq!(row["high_risk"].as_bool().unwrap().to_string(), &rec[5], "the flag as the page shows it");
        assert_eq!(row["domain"].as_str().unwrap(), &rec[3]);
        assert_eq!(row["path"].as_str().unwrap(), &rec[23]);
    }
}

/// Phones name photos IMG_0001.jpg in every folder: the rows must still say which is which.
#[test]
fn same_named_photos_in_two_folders_are_told_apart() {
    let dir = common::temp_dir("same-name");
    let ids = held_out(2);
    for (folder, (id, _)) in ["a", "b"].iter().zip(&ids) {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::copy(common::image(id), dir.join(folder).join("IMG_0001.jpg")).unwrap();
    }
    let maps = dir.join("maps");
    let out = dermscreen(&["classify", "--format", "csv", "--saliency", maps.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<_> = csv::Reader::from_reader(text.as_bytes()).records().map(|r| r.unwrap()).collect();
    assert!(rows.iter().all(|r| &r[0] == "IMG_0001"), "{text}");
    let paths: Vec<&str> = rows.iter().map(|r| &r[23]).collect();
    assert_eq!(paths, [dir.join("a/IMG_0001.jpg").to_str().unwrap(), dir.join("b/IMG_0001.jpg").to_str().unwrap()]);
    assert_ne!(&rows[0][4], &rows[1][4], "two different photos, two results");
    assert!(maps.join("IMG_0001.png").is_file() && maps.join("IMG_0001-2.png").is_file(), "neither overlay is overwritten");
}

/// Overlays are PNGs named after their photos: written beside a PNG photo they must not replace
/// it, and written into the folder being classified they must not be read back as photos.
#[test]
fn saliency_overlays_never_replace_a_photo_nor_are_read_as_photos() {
    let dir = common::temp_dir("saliency-out");
    let ids = held_out(3);
    copy_images(&dir, &ids[..2]);
    let spot = dir.join("spot.png");
    image::open(common::image(&ids[2].0)).unwrap().save(&spot).unwrap();
    let photo = std::fs::read(&spot).unwrap();

    // The overlays' folder inside the folder classified, run twice: the same rows and overlays.
    let maps = dir.join("maps");
    let run = |args: &[&str]| {
        let out = dermscreen(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let args = ["classify", "--format", "csv", "--saliency", maps.to_str().unwrap(), dir.to_str().unwrap()];
    let first = run(&args);
    assert_eq!(first.lines().count(), 1 + 3, "{first}");
    assert_eq!(run(&args), first, "a second run reads no overlay as a photo");
    assert_eq!(std::fs::read_dir(&maps).unwrap().count(), 3, "one overlay per photo, none of an overlay");

    // Overlays into the photo's own folder: spot.png is kept and its overlay takes the next name.
    run(&["classify", "--saliency", dir.to_str().unwrap(), spot.to_str().unwrap()]);
    assert_eq!(std::fs::read(&spot).unwrap(), photo, "the photo is untouched");
    assert!(dir.join("spot-2.png").is_file());

    // A file where the folder should go is named, with what the option takes.
    let out = dermscreen(&["classify", "--saliency", spot.to_str().unwrap(), spot.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spot.png is a file: --saliency takes a folder"));

    // No photo readable: no overlay, and no empty folder left behind for one.
    let corrupt = dir.join("corrupt.jpg");
    std::fs::write(&corrupt, "not a photo").unwrap();
    let unmade = dir.join("unmade");
    let out = dermscreen(&["classify", "--saliency", unmade.to_str().unwrap(), corrupt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote no saliency overlay"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!unmade.exists(), "a run that wrote no overlay left an empty folder");
}

/// A phone's camera folder copied to a computer: Android keeps a thumbnail of every photo in
/// `.thumbnails/`, and macOS writes a `._` file beside each photo on other disks. Neither is a
/// photo of its own; a hidden file named on the command line is still read.
#[test]
fn hidden_files_in_folders_are_passed_over() {
    let dir = common::temp_dir("hidden");
    let (id, _) = &held_out(1)[0];
    for (folder, name) in [("Camera", "IMG_0001.jpg"), (".thumbnails", "1234.jpg")] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::copy(common::image(id), dir.join(folder).join(name)).unwrap();
    }
    std::fs::write(dir.join("Camera/._IMG_0001.jpg"), b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ").unwrap();
    let out = dermscreen(&["classify", "--format", "csv", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "one photo: {text}");
    assert!(text.contains("Camera/IMG_0001.jpg"));
    let named = dir.join(".thumbnails/1234.jpg");
    let out = dermscreen(&["classify", "--format", "csv", named.to_str().unwrap()]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(".thumbnails/1234.jpg"));
}

/// A folder of links to photos (a hand-picked set) is read like a folder of the photos.
#[cfg(unix)]
#[test]
fn linked_photos_in_a_folder_are_classified() {
    let dir = common::temp_dir("links");
    let ids = held_out(2);
    let originals = copy_images(&common::temp_dir("links-target"), &ids);
    for (i, original) in originals.iter().enumerate() {
        std::os::unix::fs::symlink(original, dir.join(format!("picked-{i}.jpg"))).unwrap();
    }
    let out = dermscreen(&["classify", "--format", "csv", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<_> = csv::Reader::from_reader(text.as_bytes()).records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().all(|r| r[0].starts_with("picked-") && &r[1] == "ok"), "{text}");
}

/// A link to a photo since moved, and a link back up the folder tree, are each named on their
/// own line by their own path; the photos beside them are still classified.
#[cfg(unix)]
#[test]
fn broken_and_looping_links_are_named_and_the_rest_classified() {
    let dir = common::temp_dir("bad-links");
    copy_images(&dir, &held_out(1));
    let gone = dir.join("moved-away.jpg");
    std::os::unix::fs::symlink(dir.join("no-longer-here.jpg"), &gone).unwrap();
    let back = dir.join("sub/back");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("..", &back).unwrap();
    let out = dermscreen(&["classify", "--format", "csv", dir.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a problem sets the exit code: {stderr}");
    assert_eq!(stdout.lines().count(), 2, "the photo is classified: {stdout}");
    assert!(stderr.lines().any(|l| l.starts_with(&format!("dermscreen: {}: a broken link", gone.display()))), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with(&format!("dermscreen: {}: a link back to", back.display()))), "{stderr}");
}

#[test]
fn bad_files_get_an_error_line_and_the_rest_are_still_classified() {
    let dir = common::temp_dir("bad");
    let ids = held_out(2);
    let good = copy_images(&dir, &ids);
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("letter.jpg");
    std::fs::write(&text, b"Dear doctor, this is not a picture.").unwrap();
    let truncated = dir.join("truncated.jpg");
    let bytes = std::fs::read(&good[0]).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let tiny = dir.join("tiny.png");
    image::RgbImage::new(1, 1).save(&tiny).unwrap();
    let huge = dir.join("huge.png");
    image::GrayImage::new(8000, 7000).save(&huge).unwrap();
    let missing = dir.join("missing.jpg");

    let mut args = vec!["classify".to_string(), "--format".into(), "csv".into()];
    for p in [&good[0], &empty, &text, &truncated, &tiny, &huge, &missing, &good[1]] {
        args.push(p.display().to_string());
    }
    let out = dermscreen(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "non-zero exit after bad files; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (file, why) in [
        (&empty, "empty file"),
        (&text, "not a supported image"),
        (&truncated, "corrupt or truncated"),
        (&tiny, "too small"),
        (&huge, "too large"),
        (&missing, "no such file"),
    ] {
        let line = stderr.lines().find(|l| l.contains(&*file.display().to_string()));
        assert!(line.is_some_and(|l| l.contains(why)), "expected '{why}' for {}; stderr:\n{stderr}", file.display());
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "header + the two good images:\n{stdout}");
    assert!(stdout.contains(&ids[0].0) && stdout.contains(&ids[1].0));
}

#[test]
fn the_shipped_model_is_built_in_so_any_folder_works() {
    // Run from a folder with no model/ in it, as an installed program is.
    let dir = common::temp_dir("anywhere");
    let photo = copy_images(&dir, &held_out(1)).remove(0);
    let out = Command::new(env!("CARGO_BIN_EXE_dermscreen"))
        .current_dir(&dir)
        .args(["classify", "--format", "csv", photo.file_name().unwrap().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_repo = dermscreen(&["classify", "--format", "csv", "--model", "model", photo.to_str().unwrap()]);
    // Every column but the path as given.
    let row = |out: &Output| csv::Reader::from_reader(&out.stdout[..]).records().next().unwrap().unwrap().iter().take(23).map(String::from).collect::<Vec<_>>();
    let built_in = row(&out);
    assert_eq!(built_in, row(&from_repo), "built in = model/");
    assert_eq!(built_in[1], "ok", "a lesion photo is classified");
}

/// A large folder (a phone's whole camera roll) is classified a batch at a time: results are
/// written as each batch is done, not held (with every photo's pixels) until the end. Seen in
/// the order of the two streams: the first batch's rows come before the error about a
/// damaged file in the second batch.
#[cfg(unix)]
#[test]
fn results_come_out_as_they_are_ready() {
    let dir = common::temp_dir("stream");
    let damaged = dir.join("damaged.jpg");
    std::fs::write(&damaged, b"not a photo").unwrap();
    let photos: Vec<PathBuf> = common::validation_split().iter().take(64).map(|(id, _)| common::image(id)).collect();
    let mut args: Vec<&str> = photos[..40].iter().map(|p| p.to_str().unwrap()).collect();
    args.push(damaged.to_str().unwrap());
    args.extend(photos[40..].iter().map(|p| p.to_str().unwrap()));
    // One pipe for both streams, so their order is kept.
    let out = Command::new("sh")
        .current_dir(common::root())
        .arg("-c")
        .arg(r#"exec "$0" classify --format csv "$@" 2>&1"#)
        .arg(env!("CARGO_BIN_EXE_dermscreen"))
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let error = lines.iter().position(|l| l.contains("damaged.jpg")).expect("the damaged file is named");
    assert_eq!(lines.len(), 1 + 64 + 1, "header, every photo, the error:\n{text}");
    assert_eq!(error, 1 + 32, "the first batch of 32 is written before the second is read:\n{text}");
    assert_eq!(out.status.code(), Some(1), "a file could not be read");
}

/// `dermscreen classify DIR | head -1`: the reader leaving early is not an error to report.
#[test]
fn a_reader_that_closes_the_pipe_early_gets_no_error() {
    let dir = common::temp_dir("pipe");
    copy_images(&dir, &held_out(2));
    for format in ["text", "csv", "json"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dermscreen"))
            .current_dir(common::root())
            .args(["classify", "--format", format, dir.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the model has even loaded, so every write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = dermscreen(&["classify", "--model", "no-such-model", common::image(&held_out(1)[0].0).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-model/model.json"), "{stderr}");
}

#[test]
fn missing_label_table_is_named_once_with_its_cause_once_and_leaves_no_report_folder() {
    let report = common::temp_dir("no-labels").join("report");
    let out = dermscreen(&["evaluate", "--images", ".", "--labels", "no-such-labels.csv", "--out", report.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("no-such-labels.csv").count(), 1, "{stderr}");
    assert_eq!(stderr.to_lowercase().matches("no such file").count(), 1, "{stderr}");
    assert!(!report.exists(), "a failed run left {} behind", report.display());
}

#[test]
fn a_label_table_whose_photos_are_all_missing_is_an_error_that_leaves_no_report_folder() {
    let dir = common::temp_dir("evaluate-none-found");
    let (out, metrics) = evaluate_table(&dir, "image_id,dx\nno-such-photo,mel\n");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-photo") && stderr.contains("no labelled photo"), "{stderr}");
    assert!(metrics.is_none() && !dir.join("report").exists(), "a failed run left a report folder behind");
}

/// The 48 and 50 megapixel modes of today's phone cameras (8160x6120 here) make JPEGs that are
/// classified, not refused: the same spot gets the same risk as at its own size (within 0.05;
/// the upscaled copy is softer).
#[test]
fn a_50_megapixel_phone_jpeg_is_classified_as_its_small_original_is() {
    let dir = common::temp_dir("50mp");
    let original = common::image(&held_out(1)[0].0);
    let small = image::open(&original).unwrap().to_rgb8();
    let big = image::imageops::resize(&small, 8160, 6120, image::imageops::FilterType::Triangle);
    let photo = dir.join("IMG_50MP.jpg");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&photo).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90).encode_image(&big).unwrap();
    drop(file);
    let risk = |path: &Path| {
        let out = dermscreen(&["classify", "--format", "json", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows[0]["malignant"].as_f64().unwrap()
    };
    let (big_risk, small_risk) = (risk(&photo), risk(&original));
    assert!((big_risk - small_risk).abs() < 0.05, "50 MP {big_risk:.3}, original {small_risk:.3}");
}

/// `curl ... | dermscreen classify -`: a photo piped in gets the row the same file gets, named
/// `-`, and its overlay (the photo decoded a second time) is made from the same bytes.
#[test]
fn a_photo_on_standard_input_is_classified_as_the_same_file_is() {
    use std::io::Write;
    let photo = common::image(&held_out(1)[0].0);
    let dir = common::temp_dir("stdin");
    let piped = |args: &[&str], bytes: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dermscreen"))
            .current_dir(common::root())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run dermscreen");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let maps = dir.join("maps");
    let out = piped(&["classify", "--format", "csv", "--saliency", maps.to_str().unwrap(), "-"], &std::fs::read(&photo).unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_file = dermscreen(&["classify", "--format", "csv", photo.to_str().unwrap()]);
    // The image, every column but the two that name the photo, and the path.
    let row = |o: &Output| {
        let mut rdr = csv::Reader::from_reader(o.stdout.as_slice());
        let header = rdr.headers().unwrap().clone();
        let rec = rdr.records().next().unwrap().unwrap();
        let named = |name: &str| rec[header.iter().position(|h| h == name).unwrap()].to_string();
        let columns: Vec<String> = header.iter().zip(&rec).filter(|(h, _)| !matches!(*h, "image" | "path")).map(|(_, v)| v.to_string()).collect();
        (named("image"), columns, named("path"))
    };
    let ((name, piped_row, path), (_, file_row, _)) = (row(&out), row(&from_file));
    assert_eq!((name.as_str(), path.as_str()), ("-", "-"), "named - as image and path");
    assert_eq!(piped_row, file_row, "the file's columns");
    assert!(maps.join("-.png").is_file());

    let out = piped(&["classify", "-"], b"not a photo");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-: not a supported image"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn text_output_says_it_is_a_screening_aid() {
    let out = dermscreen(&["classify", common::image(&held_out(1)[0].0).to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("malignant") && text.contains("top:"), "{text}");
    assert!(text.contains("not a diagnosis"), "{text}");
}

/// A person reading the text output gets diagnoses in words, not the taxonomy's ids: the top
/// three are named as the JSON names them, less the examples in brackets.
#[test]
fn text_output_names_diagnoses_in_words() {
    let image = common::image(&held_out(1)[0].0);
    let path = image.to_str().unwrap();
    let text = String::from_utf8(dermscreen(&["classify", path]).stdout).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&dermscreen(&["classify", "--format", "json", path]).stdout).unwrap();
    let mut classes: Vec<(String, String, f64)> = json[0]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().into(), c["name"].as_str().unwrap().into(), c["probability"].as_f64().unwrap()))
        .collect();
    classes.sort_by(|a, b| b.2.total_cmp(&a.2));
    let top = text.split(" | top: ").nth(1).and_then(|t| t.split(" | ").next()).expect(&text);
    let named: Vec<String> = classes[..3]
        .iter()
        .map(|(_, name, p)| format!("{} {:.1}%", name.split(" (").next().unwrap(), 100.0 * p))
        .collect();
    assert_eq!(top, named.join(", "), "{text}");
    assert!(classes.iter().all(|(id, _, _)| !top.split(", ").any(|t| t.starts_with(&format!("{id} ")))), "{top}");
}

/// When no diagnosis reaches 50% the page says the model is unsure; the CLI's three formats say
/// the same, from the one `unsure` the browser event carries too.
#[test]
fn every_format_says_when_no_diagnosis_reaches_half() {
    let dir = common::temp_dir("unsure");
    let files = copy_images(&dir, &held_out(4));
    let paths: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let run = |format: &str| {
        let out = dermscreen(&[&["classify", "--format", format][..], &paths].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let unsure: Vec<bool> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let top = row["classes"].as_array().unwrap().iter().map(|c| c["probability"].as_f64().unwrap()).fold(0.0, f64::max);
            assert_eq!(row["unsure"].as_bool(), Some(top < 0.5), "{row}");
            top < 0.5
        })
        .collect();
    assert!(unsure.contains(&true) && unsure.contains(&false), "these photos include sure and unsure results: {unsure:?}");
    let text = run("text");
    let said: Vec<bool> = text.lines().filter(|l| l.contains(" | top: ")).map(|l| l.contains("| unsure: no diagnosis reaches 50%")).collect();
    assert_eq!(said, unsure, "{text}");
    let csv_text = run("csv");
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(rdr.headers().unwrap().iter().next_back(), Some("unsure"), "appended last: earlier columns keep their places");
    let column: Vec<bool> = rdr.records().map(|r| r.unwrap().iter().next_back().unwrap().parse().unwrap()).collect();
    assert_eq!(column, unsure);
}

/// Runs `evaluate` over the data root on a label table (its text), reporting into `dir/report`;
/// returns the run and its `metrics.json`, when one was written.
fn evaluate_table(dir: &Path, table: &str) -> (Output, Option<serde_json::Value>) {
    evaluate_table_in(dir, &common::data_root(), table)
}

/// [`evaluate_table`] on the photos under `images`.
fn evaluate_table_in(dir: &Path, images: &Path, table: &str) -> (Output, Option<serde_json::Value>) {
    evaluate_named(dir, "report", images, Some(table), &[])
}

/// Runs `evaluate` on the photos under `images`, with the label table `table` (its text,
/// written to `dir/name.csv`) if given, and `args` (`--by ...`), reporting into `dir/name`;
/// returns the run and its `metrics.json`, when one was written.
fn evaluate_named(dir: &Path, name: &str, images: &Path, table: Option<&str>, args: &[&str]) -> (Output, Option<serde_json::Value>) {
    let labels = dir.join(format!("{name}.csv"));
    let report = dir.join(name);
    let mut all = vec!["evaluate", "--images", images.to_str().unwrap(), "--out", report.to_str().unwrap()];
    if let Some(table) = table {
        std::fs::write(&labels, table).unwrap();
        all.extend(["--labels", labels.to_str().unwrap()]);
    }
    all.extend(args);
    let out = dermscreen(&all);
    let metrics = std::fs::read(report.join("metrics.json")).ok().map(|b| serde_json::from_slice(&b).unwrap());
    (out, metrics)
}

/// Label tables come in other vocabularies (ISIC writes MEL and NV, PAD-UFES writes NEV) and
/// from Windows, whose paths separate folders with backslashes.
#[test]
fn evaluate_reads_labels_in_capitals_and_windows_paths_and_names_each_unknown_label_once() {
    let dir = common::temp_dir("evaluate-labels");
    let rows = common::validation_rows();
    let ham = |dx: &'static str| rows.iter().filter(move |l| l.source.as_deref() == Some("ham10000") && l.dx == dx);
    let mut table = String::from("image,dx\n");
    for (i, l) in ham("mel").take(2).chain(ham("nv").take(2)).enumerate() {
        let image = if i == 0 { l.image.replace('/', "\\") } else { l.image.clone() };
        table += &format!("{image},{}\n", l.dx.to_uppercase());
    }
    for l in ham("nv").skip(2).take(3) {
        table += &format!("{},NEV\n", l.image);
    }
    let (out, metrics) = evaluate_table(&dir, &table);
    assert_eq!(out.status.code(), Some(1), "scored, with a problem to report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("label 'NEV' (3 rows").count(), 1, "{stderr}");
    assert!(stderr.contains("taxonomy id") && stderr.contains("mel"), "says what `dx` takes: {stderr}");
    let metrics = metrics.unwrap();
    assert_eq!(metrics["summary"]["images"], 4, "MEL and NV are read as mel and nv, a\\b as a/b");
    let all = &metrics["by_source_and_kind"][0];
    assert_eq!((&all["malignant"], &all["melanomas"]), (&2.into(), &2.into()), "MEL is a melanoma in the flag's numbers too: {all}");
}

/// A table may know only whether each spot was benign or malignant (a clinic's pathology
/// results): such photos are scored for malignant vs benign, the taxonomy's first level and the
/// flag, exactly as if their diagnoses were given, and left out of what needs a diagnosis.
#[test]
fn evaluate_scores_photos_labelled_only_benign_or_malignant() {
    let dir = common::temp_dir("evaluate-coarse");
    let rows: Vec<_> = common::validation_rows().into_iter().filter(|l| l.source.as_deref() == Some("pad_ufes_20")).collect();
    let taxonomy = dermscreen::taxonomy::Taxonomy::bundled();
    let coarse = |dx: &str| if taxonomy.is_within(dx, "malignant").unwrap() { "malignant" } else { "Benign" };
    let table = |dx: &dyn Fn(&str) -> String| rows.iter().fold(String::from("image,dx\n"), |t, l| t + &format!("{},{}\n", l.image, dx(&l.dx)));
    let (out, fine) = evaluate_table(&dir, &table(&|dx| dx.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, only) = evaluate_table(&dir, &table(&|dx| coarse(dx).to_string()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (fine, only) = (fine.unwrap(), only.unwrap());
    let task = |m: &serde_json::Value, name: &str| m["summary"]["binary_tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(task(&only, "malignant_vs_benign"), task(&fine, "malignant_vs_benign"));
    assert!(task(&only, "malignant_vs_benign")["auc"].as_f64().unwrap() > 0.8, "a real score: {}", task(&only, "malignant_vs_benign")["auc"]);
    assert_eq!(task(&only, "melanoma_vs_nevus")["auc"], serde_json::Value::Null, "no photo is labelled a melanoma or a nevus");
    assert_eq!(only["summary"]["images"], rows.len());
    assert_eq!(only["summary"]["calibration"], fine["summary"]["calibration"]);
    let level = |m: &serde_json::Value| m["summary"]["confusion"].as_array().unwrap().iter().find(|c| c["level"] == "first level").unwrap().clone();
    assert_eq!(level(&only), level(&fine), "benign and malignant are the first level of the taxonomy");
    for key in ["malignant", "benign", "flag_sensitivity", "flag_specificity"] {
        let (a, b) = (&only["by_source_and_kind"][0][key], &fine["by_source_and_kind"][0][key]);
        assert_eq!(a, b, "{key}");
    }
    assert_eq!(only["by_source_and_kind"][0]["melanomas"], 0, "which cancers are melanomas is not known");
    assert!(stdout.contains(&format!("{} images labelled above the training classes", rows.len())), "says what they were not scored on: {stdout}");
    assert!(stdout.contains("balanced accuracy n/a"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report").join("index.html")).unwrap();
    assert!(html.contains("balanced accuracy <strong>n/a</strong>"), "the report page says so too, not 0.000");
}

/// HAM10000's own metadata (`image_id`, `dx`), as it comes with the data set, is a label table.
#[test]
fn evaluate_reads_ham10000s_metadata_as_it_comes() {
    let dir = common::temp_dir("evaluate-metadata");
    let ham = common::data_root().join("ham10000");
    let metadata = std::fs::read_to_string(ham.join("metadata.csv")).unwrap();
    let mut lines = metadata.lines();
    let mut table: Vec<&str> = lines.by_ref().take(4).collect();
    table.extend(lines.filter(|l| l.contains(",mel,")).take(3));
    let (out, metrics) = evaluate_table_in(&dir, &ham.join("images"), &(table.join("\n") + "\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(metrics.unwrap()["summary"]["images"], 6);
}

/// PAD-UFES-20's own metadata.csv names its photos `img_id` and its diagnoses `diagnostic`, in
/// its codes (ACK, SEK, NEV, MEL, BCC, SCC): read as it comes, the codes map as the trainer maps
/// them (taxonomy/sources.json) and the photos are reported as that source's phone photos.
#[test]
fn evaluate_reads_pad_ufes_20s_metadata_as_it_comes() {
    let dir = common::temp_dir("evaluate-pad");
    let pad = common::shared_data("pad-ufes-20-subset");
    let metadata = std::fs::read_to_string(pad.join("metadata.csv")).unwrap();
    let mut lines = metadata.lines();
    let header = lines.next().unwrap();
    let column = header.split(',').position(|c| c == "diagnostic").unwrap();
    // Two photos of each diagnosis.
    let mut seen = std::collections::BTreeMap::new();
    let rows: Vec<&str> = lines
        .filter(|l| {
            let n = seen.entry(l.split(',').nth(column).unwrap().to_string()).or_insert(0);
            *n += 1;
            *n <= 2
        })
        .collect();
    assert_eq!(seen.len(), 6, "{seen:?}");
    let (out, metrics) = evaluate_table_in(&dir, &pad.join("images"), &format!("{header}\n{}\n", rows.join("\n")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("pad_ufes_20's own table") && stderr.contains("optimistic"), "the trained-on photos are pointed out: {stderr}");
    let metrics = metrics.unwrap();
    assert_eq!(metrics["summary"]["images"], 12);
    let groups: Vec<(&str, u64)> = metrics["by_source_and_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap(), g["images"].as_u64().unwrap()))
        .collect();
    assert_eq!(groups, [("all", 12), ("pad_ufes_20", 12), ("clinical", 12)]);

    // A table with neither `dx` nor a known data set's diagnosis column names both.
    let (out, _) = evaluate_table_in(&dir, &pad.join("images"), "img_id,diagnosis\nPAT_1006_53_716.jpg,ACK\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no column 'dx'") && stderr.contains("diagnostic (pad_ufes_20)"), "{stderr}");
}

/// The first `n` of `rows` (validation photos) from `source` with diagnosis `dx`.
fn photos_of<'a>(rows: &'a [Label], source: &'a str, dx: &'a str, n: usize) -> impl Iterator<Item = &'a Label> + 'a {
    rows.iter().filter(move |l| l.source.as_deref() == Some(source) && l.dx == dx).take(n)
}

/// A photo's name without folder and extension, as the ISIC challenges' tables name them.
fn stem(l: &Label) -> String {
    Path::new(&l.image).file_stem().unwrap().to_str().unwrap().to_string()
}

/// The ISIC challenges publish their ground truth one-hot: a column per diagnosis (ISIC 2019:
/// MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK; ISIC 2018: AKIEC for AK, no SCC nor UNK), 1.0 in
/// the row's diagnosis. Read as it comes, it scores exactly as the same photos labelled `dx`;
/// an UNK photo is named as a label the model has no class for, and a row marking two
/// diagnoses is refused, naming its photo.
#[test]
fn evaluate_reads_isic_challenges_one_hot_ground_truth_as_it_comes() {
    let dir = common::temp_dir("evaluate-one-hot");
    let images = common::shared_data("isic2019-extra").join("images");
    let rows = common::validation_rows();
    let pick = |dx, n| photos_of(&rows, "bcn_20000", dx, n);
    let picked: Vec<_> = pick("mel", 2).chain(pick("nv", 2)).chain(pick("akiec", 1)).chain(pick("scc", 1)).collect();
    const ISIC_2019: [&str; 9] = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"];
    let one_hot = |columns: &[&str], marked: &[&str]| columns.iter().map(|c| if marked.contains(c) { "1.0" } else { "0.0" }).collect::<Vec<_>>().join(",");
    let code = |dx: &str| match dx {
        "akiec" => "AK".to_string(),
        other => other.to_uppercase(),
    };
    let mut table = format!("image,{}\n", ISIC_2019.join(","));
    let mut plain = String::from("image,dx\n");
    for l in &picked {
        table += &format!("{},{}\n", stem(l), one_hot(&ISIC_2019, &[code(&l.dx).as_str()]));
        plain += &format!("{},{}\n", stem(l), l.dx);
    }
    let unknown = stem(pick("bkl", 1).next().unwrap());
    let (out, one_hot_metrics) = evaluate_table_in(&dir, &images, &format!("{table}{unknown},{}\n", one_hot(&ISIC_2019, &["UNK"])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "scored, with the UNK photo reported: {stderr}");
    assert!(stderr.contains(&format!("label 'UNK' (1 row, the first {unknown})")), "{stderr}");
    let (out, plain_metrics) = evaluate_table_in(&dir, &images, &plain);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (one_hot_metrics, plain_metrics) = (one_hot_metrics.unwrap(), plain_metrics.unwrap());
    assert_eq!(one_hot_metrics["summary"]["images"], 6);
    assert_eq!(one_hot_metrics["summary"], plain_metrics["summary"], "AK is akiec, SCC scc, and so on");
    let groups: Vec<&str> = one_hot_metrics["by_source_and_kind"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert!(groups.contains(&"dermoscopic"), "the challenges' photos are dermoscopic: {groups:?}");

    // ISIC 2018's columns, on HAM10000's photos.
    const ISIC_2018: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];
    let ham: Vec<_> = rows.iter().filter(|l| l.source.as_deref() == Some("ham10000") && ["mel", "nv", "akiec"].contains(&l.dx.as_str())).take(40).collect();
    let mut table = format!("image,{}\n", ISIC_2018.join(","));
    for l in &ham {
        table += &format!("{},{}\n", stem(l), one_hot(&ISIC_2018, &[l.dx.to_uppercase().as_str()]));
    }
    let ham_images = common::shared_data("ham10000").join("images");
    let (out, metrics) = evaluate_table_in(&dir, &ham_images, &table);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(metrics.unwrap()["summary"]["images"], ham.len());

    // Two diagnoses in one row: which is meant cannot be told.
    let twice = stem(ham[0]);
    let (out, _) = evaluate_table_in(&dir, &ham_images, &format!("image,{}\n{twice},{}\n", ISIC_2018.join(","), one_hot(&ISIC_2018, &["MEL", "NV"])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&twice) && stderr.contains("MEL") && stderr.contains("NV"), "{stderr}");
}

/// ISIC 2020's ground truth names its photos `image_name`, its diagnoses in words (`melanoma`,
/// `nevus`, `seborrheic keratosis`, ... and `unknown` for most benign spots) and the outcome in
/// `benign_malignant`. Read as it comes, it scores as the same photos labelled `dx`, an
/// `unknown` one as `benign`.
#[test]
fn evaluate_reads_isic_2020s_ground_truth_as_it_comes() {
    let dir = common::temp_dir("evaluate-isic2020");
    let images = common::shared_data("ham10000").join("images");
    let rows = common::validation_rows();
    let pick = |dx, n| photos_of(&rows, "ham10000", dx, n);
    let mut isic = String::from("image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target\n");
    let mut plain = String::from("image,dx\n");
    let words = [("mel", "melanoma", "malignant"), ("nv", "nevus", "benign"), ("bkl", "seborrheic keratosis", "benign"), ("nv", "unknown", "benign")];
    for (i, (dx, word, outcome)) in words.iter().enumerate() {
        // The `unknown` ones are other nevi than the `nevus` ones.
        let skip = if *word == "unknown" { 12 } else { 0 };
        for l in pick(dx, skip + 12).skip(skip) {
            isic += &format!("{},IP_{i},IL_{i},male,50,torso,{word},{outcome},{}\n", stem(l), u8::from(*outcome == "malignant"));
            plain += &format!("{},{}\n", stem(l), if *word == "unknown" { "benign" } else { dx });
        }
    }
    let (out, theirs) = evaluate_table_in(&dir, &images, &isic);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, ours) = evaluate_table_in(&dir, &images, &plain);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (theirs, ours) = (theirs.unwrap(), ours.unwrap());
    assert_eq!(theirs["summary"]["images"], 48);
    assert_eq!(theirs["summary"]["above_classes"], 12, "the unknown ones are known only to be benign");
    assert_eq!(theirs["summary"], ours["summary"]);
    let flag_row = |m: &serde_json::Value| {
        let mut row = m["by_source_and_kind"][0].clone();
        row.as_object_mut().unwrap().remove("kind_recognised"); // only theirs says which kind its photos are
        row
    };
    assert_eq!(flag_row(&theirs), flag_row(&ours), "the flag's numbers");
    assert_eq!(theirs["by_source_and_kind"][1]["group"], "dermoscopic", "the challenge's photos are dermoscopic");
}

/// Clinical photo sets publish their own tables: DDI (`DDI_file`, `disease` in hyphenated
/// words, `malignant` True/False) and Fitzpatrick17k (`md5hash`, `label` in words,
/// `three_partition_label`). Read as they come, they score as the same photos labelled `dx`: a
/// disease the model has a class for as that class, any other as its outcome (a nevus that is
/// not melanocytic is no `nv`), the photos clinical, and a non-neoplastic one named as a label
/// the model has no class for.
#[test]
fn evaluate_reads_ddi_and_fitzpatrick17k_tables_as_they_come() {
    let dir = common::temp_dir("evaluate-clinical-sets");
    let images = common::shared_data("pad-ufes-20-subset").join("images");
    let rows = common::validation_rows();
    let pick = |dx, n| photos_of(&rows, "pad_ufes_20", dx, n);
    // (dx, DDI's word, Fitzpatrick17k's word, what the photo is scored as).
    let words = [
        ("mel", "melanoma-in-situ", "lentigo maligna", "mel"),
        ("bcc", "basal-cell-carcinoma-nodular", "basal cell carcinoma morpheiform", "bcc"),
        ("scc", "squamous-cell-carcinoma-keratoacanthoma", "squamous cell carcinoma", "scc"),
        ("akiec", "actinic-keratosis", "actinic keratosis", "akiec"),
        ("bkl", "seborrheic-keratosis-irritated", "seborrheic keratosis", "bkl"),
        ("nv", "melanocytic-nevi", "congenital nevus", "nv"),
        ("nv", "nevus-lipomatosus-superficialis", "epidermal nevus", "benign"),
    ];
    let mut ddi = String::from("DDI_ID,DDI_file,skin_tone,malignant,disease\n");
    let mut fitzpatrick = String::from("md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,url,url_alphanum\n");
    let mut plain = String::from("image,dx\n");
    for (i, (dx, ddi_word, fitzpatrick_word, scored)) in words.iter().enumerate() {
        // The nevi with other words are other nevi than the melanocytic ones.
        let skip = if *scored == "benign" { 3 } else { 0 };
        let malignant = ["mel", "bcc", "scc", "akiec"].contains(dx);
        let outcome = if malignant { "malignant" } else { "benign" };
        for l in pick(dx, skip + 3).skip(skip) {
            let file = Path::new(&l.image).file_name().unwrap().to_str().unwrap();
            ddi += &format!("{i},{file},34,{},{ddi_word}\n", if malignant { "True" } else { "False" });
            fitzpatrick += &format!("{},3,3,{fitzpatrick_word},{outcome} epidermal,{outcome},,https://example.org/{i}.jpg,{i}.jpg\n", stem(l));
            plain += &format!("{file},{scored}\n");
        }
    }
    let (out, ours) = evaluate_table_in(&dir, &images, &plain);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = ours.unwrap();
    assert_eq!(ours["summary"]["images"], 21, "3 photos for each row of words");
    assert_eq!(ours["summary"]["above_classes"], 3, "the nevi known only to be benign");
    let flag_row = |m: &serde_json::Value| {
        let mut row = m["by_source_and_kind"][0].clone();
        row.as_object_mut().unwrap().remove("kind_recognised"); // only theirs says which kind its photos are
        row
    };

    let (out, theirs) = evaluate_table_in(&dir, &images, &ddi);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = theirs.unwrap();
    assert_eq!(theirs["summary"], ours["summary"], "DDI's words and outcomes");
    assert_eq!(flag_row(&theirs), flag_row(&ours), "the flag's numbers");
    assert_eq!(theirs["by_source_and_kind"][1]["group"], "clinical", "DDI's photos are clinical");

    let psoriasis = stem(pick("nv", 7).last().unwrap());
    let (out, theirs) = evaluate_table_in(&dir, &images, &format!("{fitzpatrick}{psoriasis},2,2,psoriasis,inflammatory,non-neoplastic,,https://example.org/p.jpg,p.jpg\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "scored, with the psoriasis photo reported: {stderr}");
    assert!(stderr.contains(&format!("label 'non_neoplastic' (1 row, the first {psoriasis})")), "{stderr}");
    let theirs = theirs.unwrap();
    assert_eq!(theirs["summary"], ours["summary"], "Fitzpatrick17k's words and outcomes");
    assert_eq!(flag_row(&theirs), flag_row(&ours), "the flag's numbers");
    assert_eq!(theirs["by_source_and_kind"][1]["group"], "clinical", "Fitzpatrick17k's photos are clinical");
}

/// derm7pt (the seven-point checklist set) photographs each lesion twice, `derm` through a
/// dermatoscope and `clinic` without one, in one row with its `diagnosis` in words: read as it
/// comes, each row gives two photos of their kinds, scored as the same photos labelled `dx`
/// and `kind` row by row, and `--by` reaches both.
#[test]
fn evaluate_reads_derm7pts_paired_photos_as_they_come() {
    let dir = common::temp_dir("evaluate-derm7pt");
    let root = common::data_root();
    let rows = common::validation_rows();
    // No set here has both photos of one lesion: a HAM10000 and a phone photo of one diagnosis stand in.
    let pairs = [("mel", "melanoma (less than 0.76 mm)"), ("nv", "clark nevus"), ("nv", "reed or spitz nevus"), ("bcc", "basal cell carcinoma"), ("bkl", "seborrheic keratosis")];
    let mut derm7pt = String::from("case_num,diagnosis,seven_point_score,pigment_network,clinic,derm,elevation,location,sex,management\n");
    let mut plain = String::from("image,dx,kind,sex\n");
    for (i, (dx, word)) in pairs.iter().enumerate() {
        let skip = if *word == "reed or spitz nevus" { 2 } else { 0 };
        let derm = photos_of(&rows, "ham10000", dx, skip + 2).skip(skip).map(|l| l.image.clone());
        let clinic = photos_of(&rows, "pad_ufes_20", dx, skip + 2).skip(skip).map(|l| l.image.clone());
        for (j, (derm, clinic)) in derm.zip(clinic).enumerate() {
            let sex = ["female", "male"][(i + j) % 2];
            derm7pt += &format!("{},{word},1,typical,{clinic},{derm},flat,back,{sex},excision\n", 10 * i + j);
            plain += &format!("{derm},{dx},dermoscopic,{sex}\n{clinic},{dx},clinical,{sex}\n");
        }
    }
    let run = |name: &str, table: &str| {
        let (out, metrics) = evaluate_named(&dir, name, &root, Some(table), &["--by", "sex"]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        metrics.unwrap()
    };
    let (theirs, ours) = (run("derm7pt", &derm7pt), run("plain", &plain));
    assert_eq!(theirs["summary"]["images"], 20, "two photos a row");
    assert_eq!(theirs["summary"], ours["summary"]);
    assert_eq!(theirs["by_source_and_kind"], ours["by_source_and_kind"], "each kind and each sex apart");
    let groups: Vec<&str> = theirs["by_source_and_kind"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["all", "dermoscopic", "clinical", "sex female", "sex male"]);
}

/// Photos are often sorted into a folder per diagnosis (`train/benign`, `malignant`, `BCC`,
/// `seborrheic keratosis`): without --labels each photo is labelled by the nearest folder
/// above it named for one, and scores as the same photos in a table; a photo under none is
/// counted in one line and left out.
#[test]
fn evaluate_without_a_table_labels_photos_by_their_folders() {
    let dir = common::temp_dir("evaluate-folders");
    let photos = dir.join("photos");
    let rows = common::validation_rows();
    let sorted = [("mel", "Test/malignant", "malignant"), ("nv", "Test/benign/2024", "benign"), ("bkl", "Test/Seborrheic Keratosis", "bkl"), ("bcc", "Test/BCC", "bcc")];
    let mut rows_by_path = Vec::new();
    for (dx, folder, label) in sorted {
        std::fs::create_dir_all(photos.join(folder)).unwrap();
        for l in photos_of(&rows, "ham10000", dx, 4) {
            let name = format!("{folder}/{}", Path::new(&l.image).file_name().unwrap().to_str().unwrap());
            std::fs::copy(common::data_root().join(&l.image), photos.join(&name)).unwrap();
            rows_by_path.push((PathBuf::from(&name), label));
        }
    }
    // In the order the folders are walked: the AUC's bootstrap interval draws by position.
    rows_by_path.sort();
    let table: String = std::iter::once("image,dx\n".to_string()).chain(rows_by_path.iter().map(|(p, label)| format!("{},{label}\n", p.display()))).collect();
    let stray = photos_of(&rows, "ham10000", "nv", 5).last().unwrap();
    std::fs::copy(common::data_root().join(&stray.image), photos.join("Test/stray.jpg")).unwrap();
    let (out, by_folder) = evaluate_named(&dir, "by-folder", &photos, None, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "scored, with the stray photo reported: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("1 photo is under no folder named for a diagnosis (Test/stray.jpg)"), "{stderr}");
    let (out, by_table) = evaluate_named(&dir, "by-table", &photos, Some(&table), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (by_folder, by_table) = (by_folder.unwrap(), by_table.unwrap());
    assert_eq!(by_folder["summary"]["images"], 16);
    assert_eq!(by_folder["summary"], by_table["summary"]);
}

/// A model can do worse on some skin: `--by skin_tone` (DDI's column; any column of the table)
/// adds a row per value, each exactly what scoring that value's photos alone gives; a photo
/// with no value is in no such row, and a column the table lacks is named.
#[test]
fn evaluate_by_a_column_reports_each_value_apart() {
    let dir = common::temp_dir("evaluate-by");
    let images = common::shared_data("pad-ufes-20-subset").join("images");
    let rows = common::validation_rows();
    let photos: Vec<_> = rows.iter().filter(|l| l.source.as_deref() == Some("pad_ufes_20")).take(30).collect();
    let tone = |i: usize| ["12", "56", ""][i % 3];
    let table = |keep: &dyn Fn(usize) -> bool| {
        let mut t = String::from("DDI_ID,DDI_file,skin_tone,malignant,disease\n");
        for (i, l) in photos.iter().enumerate().filter(|(i, _)| keep(*i)) {
            let malignant = ["mel", "bcc", "scc", "akiec"].contains(&l.dx.as_str());
            t += &format!("{i},{},{},{},{}\n", Path::new(&l.image).file_name().unwrap().to_str().unwrap(), tone(i), if malignant { "True" } else { "False" }, l.dx);
        }
        t
    };
    let (out, metrics) = evaluate_named(&dir, "all", &images, Some(&table(&|_| true)), &["--by", "skin_tone"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let groups = metrics.unwrap()["by_source_and_kind"].as_array().unwrap().clone();
    let names: Vec<&str> = groups.iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["all", "clinical", "skin_tone 12", "skin_tone 56"], "no row for the photos without a value");
    assert!(stdout.contains("| skin_tone 56 | 10 ("), "{stdout}");
    let html = std::fs::read_to_string(dir.join("all").join("index.html")).unwrap();
    assert!(html.contains("<th>flag: cancers caught</th>") && html.contains("<td>skin_tone 56</td><td>10 ("), "the report page has the rows too: {html}");
    for (row, value) in groups[2..].iter().zip(["12", "56"]) {
        let (out, alone) = evaluate_named(&dir, value, &images, Some(&table(&|i| tone(i) == value)), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut alone = alone.unwrap()["by_source_and_kind"][0].clone();
        alone["group"] = row["group"].clone();
        assert_eq!(row, &alone, "skin tone {value}: as its photos alone score");
    }

    let (out, _) = evaluate_named(&dir, "typo", &images, Some(&table(&|_| true)), &["--by", "skin_type"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'skin_type'"), "{stderr}");
}

/// Cameras name their photos IMG_0001.JPG: a table naming them without the extension finds them.
#[test]
fn evaluate_finds_photos_with_capital_extensions() {
    let dir = common::temp_dir("evaluate-capitals");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let mut table = String::from("image,dx\n");
    for (i, (id, dx)) in held_out(2).iter().enumerate() {
        std::fs::copy(common::image(id), photos.join(format!("IMG_000{i}.{}", ["JPG", "JPEG"][i]))).unwrap();
        table += &format!("IMG_000{i},{dx}\n");
    }
    let (out, metrics) = evaluate_table_in(&dir, &photos, &table);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(metrics.unwrap()["summary"]["images"], 2);
}

/// Label tables joined from several files repeat rows; an image counted twice would narrow the
/// intervals and tilt the AUCs, so each image is scored once and the repeats are reported.
#[test]
fn evaluate_scores_a_repeated_image_once() {
    let dir = common::temp_dir("evaluate-repeats");
    let rows: Vec<_> = common::validation_rows().into_iter().filter(|l| l.source.as_deref() == Some("ham10000")).take(5).collect();
    let mut table = String::from("image,dx\n");
    for l in &rows {
        table += &format!("{},{}\n", l.image, l.dx);
    }
    table += &format!("{},{}\n", rows[0].image, rows[0].dx);
    table += &format!("{},{}\n", rows[1].image, if rows[1].dx == "mel" { "nv" } else { "mel" });
    let (out, metrics) = evaluate_table(&dir, &table);
    assert_eq!(out.status.code(), Some(1), "scored, with a problem to report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("2 rows repeat an image listed before (the first, {}); 1 of them with another label", rows[0].image)), "{stderr}");
    assert_eq!(metrics.unwrap()["summary"]["images"], 5);
}

/// A table whose photos are not under --images (a wrong folder, an older copy) gets one line
/// with the count and the first names, not one line per row; a folder that is not there is
/// named before anything else.
#[test]
fn evaluate_names_missing_photos_in_one_line() {
    let dir = common::temp_dir("evaluate-missing");
    let rows: Vec<_> = common::validation_rows().into_iter().filter(|l| l.source.as_deref() == Some("ham10000")).take(8).collect();
    let mut table = String::from("image,dx\n");
    for (i, l) in rows.iter().enumerate() {
        let image = if i < 4 { l.image.clone() } else { format!("gone/{i}.jpg") };
        table += &format!("{image},{}\n", l.dx);
    }
    let (out, _) = evaluate_table(&dir, &table);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("4 labelled images are not under") && stderr.contains("gone/4.jpg, gone/5.jpg, gone/6.jpg, ..."), "{stderr}");
    let one_gone: String = table.lines().take(6).map(|l| format!("{l}\n")).collect();
    let (out, _) = evaluate_table(&dir, &one_gone);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 labelled image is not under") && stderr.contains("gone/4.jpg\n"), "{stderr}");
    let labels = dir.join("labels.csv");
    let out = dermscreen(&["evaluate", "--images", dir.join("nowhere").to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--out", dir.join("report").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere: no such folder (--images)"));
    // An --out that cannot hold the report stops the run before any photo is read, not after.
    let file = dir.join("report.json");
    std::fs::write(&file, "{}").unwrap();
    let out = dermscreen(&["evaluate", "--images", common::data_root().to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("report.json is a file: --out takes a folder") && !stderr.contains("not under"), "{stderr}");
}

/// A first try on a handful of photos gets a report, not a crash: the t-SNE map is left out
/// (it needs four points) and what two or three nevi cannot measure is n/a, not 0.
#[test]
fn evaluate_on_three_photos_reports_what_it_can() {
    let dir = common::temp_dir("evaluate-few");
    let nevi: Vec<String> = common::validation_rows().into_iter().filter(|l| l.dx == "nv").take(3).map(|l| l.image).collect();
    let (out, metrics) = evaluate_table(&dir, &format!("image,dx\n{}\n", nevi.iter().map(|i| format!("{i},nv")).collect::<Vec<_>>().join("\n")));
    let out_dir = dir.join("report");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no t-SNE map: it needs at least 4 images labelled with a training class, and 3 are"), "{stderr}");
    assert!(!out_dir.join("tsne.svg").exists() && out_dir.join("index.html").is_file());
    assert!(stdout.contains("melanoma_vs_nevus: AUC n/a, 0 vs 3 images; sensitivity n/a"), "{stdout}");
    let metrics = metrics.unwrap();
    let tasks = metrics["summary"]["binary_tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["auc"].is_null() && t["sensitivity_at_specificity"].as_array().unwrap().is_empty()));
}

#[test]
fn evaluate_writes_metrics_and_plots() {
    let dir = common::temp_dir("evaluate");
    let rows = common::validation_rows();
    let from = |source: &'static str| rows.iter().filter(move |l| l.source.as_deref() == Some(source));
    // Enough of every class for each binary task to have both sides, from three sources.
    let mut chosen = Vec::new();
    for dx in ["df", "vasc", "bkl", "nv", "akiec", "bcc", "mel"] {
        chosen.extend(from("ham10000").filter(|l| l.dx == dx).take(8));
    }
    chosen.extend(from("bcn_20000").filter(|l| l.dx == "scc").take(8));
    chosen.extend(from("pad_ufes_20").take(8));
    let labels = dir.join("labels.csv");
    let mut w = csv::Writer::from_path(&labels).unwrap();
    w.write_record(["image", "dx", "source", "kind"]).unwrap();
    for l in &chosen {
        w.write_record([&l.image, &l.dx, l.source.as_ref().unwrap(), l.kind.unwrap().as_str()]).unwrap();
    }
    w.flush().unwrap();
    let out_dir = dir.join("report");
    let images = common::data_root();
    let out = dermscreen(&[
        "evaluate",
        "--images",
        images.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
    let summary = &metrics["summary"];
    assert_eq!(summary["images"], 72);
    // Each source and kind on its own: the tasks with intervals, the flag, the kind recognised.
    let groups: Vec<&str> = metrics["by_source_and_kind"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["all", "ham10000", "bcn_20000", "pad_ufes_20", "dermoscopic", "clinical"]);
    let clinical = &metrics["by_source_and_kind"][5];
    assert_eq!(clinical["images"], 8);
    assert!(clinical["kind_recognised"].as_f64().unwrap() >= 0.75, "{clinical}");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.contains("| pad_ufes_20 | 8 ("), "{text}");
    let tasks = summary["binary_tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["carcinoma_vs_keratosis", "melanoma_vs_nevus", "malignant_vs_benign"]);
    for t in tasks {
        let auc = t["auc"].as_f64().unwrap();
        let ci = t["auc_ci95"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= auc && auc <= ci[1].as_f64().unwrap());
    }
    // The paper's partitions beside the training classes: the first level (benign / malignant;
    // HAM10000 has no non-neoplastic lesions) and the second-level nodes the data reaches.
    let levels: Vec<(&str, usize)> = summary["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["level"].as_str().unwrap(), c["labels"].as_array().unwrap().len()))
        .collect();
    assert_eq!(levels, [("training classes", 8), ("first level", 2), ("second level", 5)]);
    for c in summary["confusion"].as_array().unwrap() {
        let acc = c["accuracy"].as_f64().unwrap();
        assert!(acc > 0.0 && acc <= 1.0, "{c}");
    }
    // t-SNE of the last hidden layer: one point per image, labelled.
    let mut tsne = csv::Reader::from_path(out_dir.join("tsne.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = tsne.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 72);
    assert!(rows.iter().all(|r| r[2].parse::<f32>().unwrap().is_finite() && r[3].parse::<f32>().unwrap().is_finite()));
    for f in ["roc_melanoma_vs_nevus.svg", "roc_carcinoma_vs_keratosis.svg", "confusion_training_classes.svg", "confusion_first_level.svg", "tsne.svg"] {
        let svg = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
}

/// The five kinds of bad file that once got a cancer risk or the wrong words, each refused with
/// its own line, one line per file, while a good photo beside them is still classified.
#[test]
fn malformed_files_are_refused_each_with_its_own_reason() {
    let dir = common::temp_dir("malformed");
    let small = malformed::picture(200, 150, 7);
    let files = [
        ("claims-6000.jpg", malformed::jpeg_claiming(&malformed::jpeg(&small), 6000, 6000), "its header declares 6000x6000 px but its data ends"),
        ("canvas-6000.webp", malformed::webp_claiming(&malformed::webp(&small), 6000, 6000), "its header declares 6000x6000 px but its data ends"),
        ("deep.png", malformed::png_rgba16(6324), "image too large: 6324x6324 px needs 320 MB to decode"),
        ("absurd.png", malformed::png_claiming(&malformed::png(&small), 2_147_483_647, 2_147_483_647), "image too large: 2147483647x2147483647 px"),
        ("cut-out.png", malformed::png_cutout(&small, 0.8), "cut-out picture"),
    ];
    let mut args = vec!["classify".to_string()];
    for (name, bytes, _) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
        args.push(dir.join(name).display().to_string());
    }
    let good = held_out(1);
    args.push(copy_images(&dir, &good)[0].display().to_string());
    let out = dermscreen(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), files.len(), "one line per bad file:\n{stderr}");
    for (name, _, why) in &files {
        let line = stderr.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no line for {name}:\n{stderr}"));
        assert!(line.contains(why), "{name}: expected '{why}' in {line}");
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&good[0].0) && stdout.lines().filter(|l| l.contains("malignant")).count() == 1, "{stdout}");
}

/// A folder of pictures the app does not read is an error, not silence; given by name, each
/// file is named with what to do; the decoder's own words appear only with --verbose.
#[test]
fn unsupported_formats_and_empty_folders_are_named() {
    let dir = common::temp_dir("formats");
    let payload = vec![0u8; 256];
    for (name, header) in [
        ("a.gif", &b"GIF89a"[..]),
        ("b.bmp", b"BM"),
        ("c.tiff", b"II*\x00"),
        ("d.heic", b"\x00\x00\x00\x18ftypheic"),
        ("scan-without-extension", b"\xff\xd8\xff"),
    ] {
        std::fs::write(dir.join(name), [header, &payload].concat()).unwrap();
    }
    let out = dermscreen(&["classify", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no JPEG, PNG or WebP photo in this folder (1 other files passed over)"), "{stderr}");
    for (name, format) in [("a.gif", "GIF"), ("b.bmp", "BMP"), ("c.tiff", "TIFF"), ("d.heic", "HEIC (an iPhone's default)")] {
        let line = stderr.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name}:\n{stderr}"));
        assert!(line.contains(&format!("{format} is not supported: save it as JPEG or PNG")), "{line}");
    }
    assert!(out.stdout.is_empty());

    let bytes = malformed::png(&malformed::picture(64, 64, 9));
    let mut damaged = bytes.clone();
    let idat = damaged.windows(4).position(|w| w == b"IDAT").unwrap();
    damaged[idat + 20..idat + 40].fill(0xAA);
    let file = dir.join("damaged.png");
    std::fs::write(&file, &damaged).unwrap();
    let plain = String::from_utf8(dermscreen(&["classify", file.to_str().unwrap()]).stderr).unwrap();
    let verbose = String::from_utf8(dermscreen(&["classify", "--verbose", file.to_str().unwrap()]).stderr).unwrap();
    assert_eq!(plain.trim_end(), format!("dermscreen: {}: corrupt or truncated image: its data could not be decoded", file.display()));
    assert!(verbose.starts_with(plain.trim_end()) && verbose.len() > plain.len() + 10, "verbose adds the decoder's words: {verbose}");
    assert_eq!(verbose.lines().count(), 1);
}

/// `classify --context`: answers per image (any may be empty), the output says which fields
/// were used; a value it does not take stops the run naming the file, row and field.
#[test]
fn context_file_is_used_and_bad_values_name_the_field() {
    let dir = common::temp_dir("context");
    let ids = held_out(2);
    let files = copy_images(&dir, &ids);
    let context = dir.join("context.csv");
    std::fs::write(&context, format!("image,age,sex,site,bled\n{},70,female,back,true\n{},,,,\n", ids[0].0, ids[1].0)).unwrap();
    let args = |ctx: &str| vec!["classify".to_string(), "--format".into(), "csv".into(), "--context".into(), ctx.into(), files[0].display().to_string(), files[1].display().to_string()];
    let run = |a: Vec<String>| dermscreen(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(context.to_str().unwrap()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(rdr.headers().unwrap().get(22), Some("context_used"));
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows[0].get(22), Some("age;sex;site;bled"));
    assert_eq!(rows[1].get(22), Some(""), "empty answers: image only");
    let plain = dermscreen(&["classify", "--format", "csv", files[0].to_str().unwrap(), files[1].to_str().unwrap()]);
    let plain_text = String::from_utf8(plain.stdout).unwrap();
    let plain_rows: Vec<csv::StringRecord> = csv::Reader::from_reader(plain_text.as_bytes()).records().map(Result::unwrap).collect();
    assert_eq!(plain_rows[1], rows[1], "no answers gives exactly the image-only row");
    assert_ne!(&plain_rows[0][4], &rows[0][4], "answers move P(malignant)");
    std::fs::write(&context, format!("image,age,site\n{},40,elbow\n", ids[0].0)).unwrap();
    let bad = run(args(context.to_str().unwrap()));
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("row 2") && err.contains("context field 'site': 'elbow' is not a body site"), "{err}");
}

/// A table that is not UTF-8 text (a photo given by mistake, a spreadsheet saved as
/// "CSV" in a Windows code page) is refused saying what was expected, not with the decoder's
/// "stream did not contain valid UTF-8".
#[test]
fn a_table_that_is_not_utf8_text_says_what_was_expected() {
    let dir = common::temp_dir("context-binary");
    let ids = held_out(1);
    let files = copy_images(&dir, &ids);
    let photo = files[0].to_str().unwrap();
    let latin1 = dir.join("latin1.csv");
    let mut bytes = format!("image,age,site\n{},40,back\n", ids[0].0).into_bytes();
    bytes.extend(b"caf\xe9,50,back\n");
    std::fs::write(&latin1, bytes).unwrap();
    for (table, row) in [(photo, None), (latin1.to_str().unwrap(), Some("line 3"))] {
        let out = dermscreen(&["classify", "--context", table, photo]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(table) && err.contains("not UTF-8 text") && err.contains("CSV UTF-8"), "{err}");
        assert!(!err.contains("stream did not contain"), "{err}");
        assert!(row.is_none_or(|r| err.contains(r)), "the line is named: {err}");
    }
    let out = dermscreen(&["evaluate", "--images", dir.to_str().unwrap(), "--labels", photo, "--out", dir.join("report").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not UTF-8 text") && err.contains("CSV UTF-8"), "{err}");
}

/// A data set's own table as `--context`: HAM10000's and PAD-UFES-20's `metadata.csv` give a
/// validation photo exactly the answers the trainer read from them (as written into
/// `model/validation_split.csv`), so the same row as that file gives.
#[test]
fn a_data_sets_own_metadata_is_read_as_context_as_the_trainer_reads_it() {
    let rows = common::validation_rows();
    for (source, folder) in [("ham10000", "ham10000"), ("pad_ufes_20", "pad-ufes-20-subset")] {
        // A photo with some answers, so that the context is used at all.
        let photo = common::data_root().join(&rows.iter().find(|l| l.source.as_deref() == Some(source)).unwrap().image);
        let classify = |context: &Path| {
            let out = dermscreen(&["classify", "--format", "csv", "--context", context.to_str().unwrap(), photo.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", context.display(), String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let theirs = classify(&common::shared_data(folder).join("metadata.csv"));
        assert_eq!(theirs, classify(&common::model_dir().join("validation_split.csv")), "{source}");
        let used = theirs.lines().nth(1).unwrap().split(',').nth(22).unwrap().to_string();
        assert!(used.contains("age") && used.contains("site"), "{source}: {used}");
    }
}

/// Phones name photos IMG_0001.jpg in every patient's folder: a context row naming the folder
/// goes to that photo only, and two different answers for one name are refused, not picked.
#[test]
fn context_rows_with_folders_reach_their_own_photo() {
    let dir = common::temp_dir("context-folders");
    let (id, _) = &held_out(1)[0];
    for folder in ["anna", "ben"] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        std::fs::copy(common::image(id), dir.join(folder).join("IMG_0001.jpg")).unwrap();
    }
    let context = dir.join("context.csv");
    let classify = |table: &str| {
        std::fs::write(&context, table).unwrap();
        dermscreen(&["classify", "--format", "csv", "--context", context.to_str().unwrap(), dir.join("anna").to_str().unwrap(), dir.join("ben").to_str().unwrap()])
    };
    let out = classify("image,age,sex\nanna/IMG_0001.jpg,72,female\nben/IMG_0001,,\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes()).records().map(Result::unwrap).collect();
    let used: Vec<(&str, &str)> = rows.iter().map(|r| (&r[23], &r[22])).collect();
    assert_eq!(used, [(dir.join("anna/IMG_0001.jpg").to_str().unwrap(), "age;sex"), (dir.join("ben/IMG_0001.jpg").to_str().unwrap(), "")]);

    // A third patient's IMG_0001.jpg with no row of its own: both rows fit it, so neither is used.
    std::fs::create_dir_all(dir.join("cleo")).unwrap();
    std::fs::copy(common::image(id), dir.join("cleo/IMG_0001.jpg")).unwrap();
    let out = dermscreen(&["classify", "--format", "csv", "--context", context.to_str().unwrap(), dir.join("cleo").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "classified, with a problem to report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cleo/IMG_0001.jpg: rows 2, 3 of") && err.contains("judged on the photo alone"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().contains(",,/"), "no context used");

    // Rows written with other folders (a table made elsewhere) still match by name.
    let out = classify("image,age\nelsewhere/photos/IMG_0001.jpg,72\n");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().skip(1).all(|l| l.contains(",age,/")), "{text}");

    let clash = classify("image,age\nIMG_0001,72\nIMG_0001.jpg,35\n");
    assert_eq!(clash.status.code(), Some(2));
    let err = String::from_utf8_lossy(&clash.stderr);
    assert!(err.contains("row 3 (IMG_0001.jpg) names the same photo as row 2 with other answers"), "{err}");
}

/// Spreadsheets in many locales save CSV with semicolons: both kinds of table are read.
#[test]
fn semicolon_separated_tables_are_read() {
    let dir = common::temp_dir("semicolons");
    let ids = held_out(2);
    let files = copy_images(&dir, &ids);
    let context = dir.join("answers.csv");
    std::fs::write(&context, format!("image;age;sex\n{};70;female\n", ids[0].0)).unwrap();
    let out = dermscreen(&["classify", "--format", "csv", "--context", context.to_str().unwrap(), files[0].to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().contains(",age;sex,"));
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, format!("image;dx\n{};{}\n{};{}\n", ids[0].0, ids[0].1, ids[1].0, ids[1].1)).unwrap();
    let report = dir.join("report");
    let out = dermscreen(&["evaluate", "--images", dir.to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["summary"]["images"], 2);
}
