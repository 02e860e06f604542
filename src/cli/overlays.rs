//! `classify --saliency`: one PNG per photo of where the model looked.

use super::files::{not_a_file, output_folder, read_photo};
use super::problems::plural;
use anyhow::{Context, Result};
use dermscreen::classifier::{image_stem, Classifier, Prediction};
use dermscreen::gate::Gate;
use dermscreen::preprocess;
use dermscreen::saliency::{self, OcclusionConfig};
use std::path::{Path, PathBuf};

/// Saliency overlays written into one folder, each named after its image (a repeated name
/// gets `-2`, `-3`, ...). A name that is one of the photos being classified (a PNG in that
/// folder) is passed over for the next: an overlay never replaces a photo.
pub(crate) struct Overlays<'a> {
    dir: &'a Path,
    used: std::collections::HashMap<String, usize>,
    photos: std::collections::HashSet<PathBuf>,
    written: usize,
    /// Photos given no risk: no map, as on the page (a map explains a diagnosis).
    gated: usize,
}

impl<'a> Overlays<'a> {
    pub(crate) fn new(dir: &'a Path, files: &[PathBuf]) -> Result<Self> {
        // Made at the first overlay: a run with none leaves no empty folder.
        not_a_file(dir, "--saliency", "one PNG per photo")?;
        let photos = files.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
        Ok(Self { dir, used: Default::default(), photos, written: 0, gated: 0 })
    }

    /// The next free name for an overlay of a photo named `stem`.
    fn path_for(&mut self, stem: String) -> PathBuf {
        loop {
            let n = self.used.entry(stem.clone()).and_modify(|n| *n += 1).or_insert(1);
            let name = if *n == 1 { format!("{stem}.png") } else { format!("{stem}-{n}.png") };
            let path = self.dir.join(name);
            if !std::fs::canonicalize(&path).is_ok_and(|p| self.photos.contains(&p)) {
                return path;
            }
        }
    }

    /// One overlay per classified input the gate passed; `files` is what the inputs'
    /// indices point into.
    pub(crate) fn write(&mut self, classifier: &Classifier, files: &[PathBuf], inputs: &[(usize, Vec<f32>)], predictions: &[Prediction]) -> Result<()> {
        for ((i, input), p) in inputs.iter().zip(predictions) {
            if p.gate == Gate::Ok {
                self.write_one(classifier, &files[*i], input)?;
            } else {
                self.gated += 1;
            }
        }
        Ok(())
    }

    /// What was written, for stderr.
    pub(crate) fn summary(&self) -> String {
        let mut line = match self.written {
            0 => "wrote no saliency overlay".to_string(),
            n => format!("wrote {n} saliency overlay{} to {}", plural(n), self.dir.display()),
        };
        if self.gated > 0 {
            line += &format!(" (none for the {} photo{} given no risk)", self.gated, plural(self.gated));
        }
        line
    }

    fn write_one(&mut self, classifier: &Classifier, file: &Path, input: &[f32]) -> Result<()> {
        let saliency = classifier.saliency_of(input, &OcclusionConfig::default())?;
        // The file decoded a moment ago; decode again for the display-size photo.
        let photo = preprocess::decode(&read_photo(file)?)?;
        if self.written == 0 {
            output_folder(self.dir, "--saliency", "one PNG per photo")?;
        }
        let path = self.path_for(image_stem(&file.to_string_lossy()));
        saliency::overlay_with_legend(&photo, &saliency)
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        self.written += 1;
        Ok(())
    }
}
