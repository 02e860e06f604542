//! Optional patient context: age, sex, body site and the questions a dermatologist asks (has the
//! spot grown, changed, bled, itched, hurt; is it raised). Every field is optional.
//!
//! The context moves the calibrated logits by `W . features(context)` ([`ContextHead`]), fitted
//! at export on validation photos with fields masked at random. A missing field encodes as
//! zeros, so a context with no answers leaves the image-only result exactly as it is.

use serde::{Deserialize, Serialize};

/// Body sites: HAM10000's `localization` values (other sources are mapped onto them in
/// `taxonomy/sources.json`).
pub const SITES: [&str; 14] = [
    "abdomen",
    "acral",
    "back",
    "chest",
    "ear",
    "face",
    "foot",
    "genital",
    "hand",
    "lower extremity",
    "neck",
    "scalp",
    "trunk",
    "upper extremity",
];

/// The yes/no questions, in feature order.
pub const QUESTIONS: [&str; 6] = ["grew", "changed", "bled", "itched", "hurt", "elevated"];

/// Every field, in the order the CLI's context CSV and the page list them.
pub const FIELDS: [&str; 9] = ["age", "sex", "site", "grew", "changed", "bled", "itched", "hurt", "elevated"];

/// Length of [`Context::features`]: age (given, scaled value), sex (2), site (14), questions (6).
pub const FEATURES: usize = 2 + 2 + SITES.len() + QUESTIONS.len();

/// A value the context does not accept, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("context field '{field}': '{value}' is not {expected}")]
pub struct ContextError {
    pub field: String,
    pub value: String,
    pub expected: String,
}

/// Sex as the data sets record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

/// What the person told about themselves and the spot; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Years.
    #[serde(default)]
    pub age: Option<f32>,
    #[serde(default)]
    pub sex: Option<Sex>,
    /// One of [`SITES`].
    #[serde(default)]
    pub site: Option<String>,
    /// Answers to [`QUESTIONS`], in that order.
    #[serde(default)]
    pub answers: [Option<bool>; 6],
}

impl Context {
    /// Sets `field` from text as the CLI and the data tables write it; empty means not given.
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), ContextError> {
        let value = value.trim();
        let err = |expected: &str| ContextError { field: field.into(), value: value.into(), expected: expected.into() };
        if let Some(q) = QUESTIONS.iter().position(|q| *q == field) {
            self.answers[q] = match value {
                "" => None,
                "true" => Some(true),
                "false" => Some(false),
                _ => return Err(err("true, false or empty")),
            };
            return Ok(());
        }
        match field {
            "age" => {
                self.age = match value {
                    "" => None,
                    v => Some(v.parse::<f32>().ok().filter(|a| (0.0..=120.0).contains(a)).ok_or_else(|| err("an age in years (0-120)"))?),
                }
            }
            "sex" => {
                self.sex = match value {
                    "" => None,
                    "male" => Some(Sex::Male),
                    "female" => Some(Sex::Female),
                    _ => return Err(err("male, female or empty")),
                }
            }
            "site" => {
                self.site = match value {
                    "" => None,
                    v if SITES.contains(&v) => Some(v.to_string()),
                    _ => return Err(err(&format!("a body site ({})", SITES.join(", ")))),
                }
            }
            _ => return Err(ContextError { field: field.into(), value: value.into(), expected: format!("a known field ({})", FIELDS.join(", ")) }),
        }
        Ok(())
    }

    /// A context from `(field, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ContextError> {
        let mut c = Self::default();
        for (f, v) in pairs {
            c.set(f, v)?;
        }
        Ok(c)
    }

    /// `field` as text, the way [`Self::set`] reads it ("" when not given).
    pub fn get(&self, field: &str) -> String {
        let answer = |q: usize| self.answers[q].map_or(String::new(), |a| a.to_string());
        match field {
            "age" => self.age.map_or(String::new(), |a| a.to_string()),
            "sex" => self.sex.map_or("", |s| if s == Sex::Male { "male" } else { "female" }).to_string(),
            "site" => self.site.clone().unwrap_or_default(),
            q => QUESTIONS.iter().position(|x| *x == q).map_or(String::new(), answer),
        }
    }

    /// Whether `field` is given.
    pub fn has(&self, field: &str) -> bool {
        match field {
            "age" => self.age.is_some(),
            "sex" => self.sex.is_some(),
            "site" => self.site.is_some(),
            q => QUESTIONS.iter().position(|x| *x == q).is_some_and(|i| self.answers[i].is_some()),
        }
    }

    /// The fields given, in [`FIELDS`] order.
    pub fn used(&self) -> Vec<&'static str> {
        FIELDS.into_iter().filter(|f| self.has(f)).collect()
    }

    /// The same context with only the fields `keep` accepts.
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Self {
        let mut c = Self::default();
        if keep("age") {
            c.age = self.age;
        }
        if keep("sex") {
            c.sex = self.sex;
        }
        if keep("site") {
            c.site = self.site.clone();
        }
        for (i, q) in QUESTIONS.iter().enumerate() {
            if keep(q) {
                c.answers[i] = self.answers[i];
            }
        }
        c
    }

    /// The encoding the head reads, [`FEATURES`] long; all zeros when nothing is given.
    pub fn features(&self) -> Vec<f32> {
        let mut f = vec![0.0; FEATURES];
        if let Some(age) = self.age {
            f[0] = 1.0;
            f[1] = (age - 55.0) / 20.0;
        }
        match self.sex {
            Some(Sex::Male) => f[2] = 1.0,
            Some(Sex::Female) => f[3] = 1.0,
            None => {}
        }
        if let Some(i) = self.site.as_deref().and_then(|s| SITES.iter().position(|x| *x == s)) {
            f[4 + i] = 1.0;
        }
        for (i, a) in self.answers.iter().enumerate() {
            f[4 + SITES.len() + i] = match a {
                Some(true) => 1.0,
                Some(false) => -1.0,
                None => 0.0,
            };
        }
        f
    }
}

/// The context's shift of the calibrated logits: `weights[class] . features`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextHead {
    /// `[classes][FEATURES]`.
    pub weights: Vec<Vec<f32>>,
}

impl ContextHead {
    /// Per training class, what to add to the calibrated logits for `context`.
    pub fn offsets(&self, context: &Context) -> Vec<f32> {
        let f = context.features();
        self.weights.iter().map(|w| w.iter().zip(&f).map(|(a, b)| a * b).sum()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_unknown_values_name_the_field() {
        let c = Context::from_pairs([("age", "63"), ("sex", "female"), ("site", "back"), ("bled", "true"), ("grew", "")]).unwrap();
        assert_eq!(c.used(), ["age", "sex", "site", "bled"]);
        let again = Context::from_pairs(FIELDS.iter().map(|f| (*f, c.get(f))).collect::<Vec<_>>().iter().map(|(f, v)| (*f, v.as_str()))).unwrap();
        assert_eq!(again, c, "get writes what set reads");
        let e = Context::from_pairs([("site", "elbow")]).unwrap_err();
        assert_eq!(e.field, "site");
        assert!(e.to_string().contains("context field 'site': 'elbow' is not a body site"), "{e}");
        assert_eq!(Context::from_pairs([("sex", "m")]).unwrap_err().field, "sex");
        assert_eq!(Context::from_pairs([("age", "200")]).unwrap_err().field, "age");
        assert_eq!(Context::from_pairs([("itched", "yes")]).unwrap_err().field, "itched");
        assert_eq!(Context::from_pairs([("colour", "brown")]).unwrap_err().field, "colour");
    }

    #[test]
    fn no_answer_encodes_as_zeros_and_leaves_the_logits_alone() {
        assert!(Context::default().features().iter().all(|&x| x == 0.0));
        let head = ContextHead { weights: vec![vec![0.5; FEATURES]; 3] };
        assert_eq!(head.offsets(&Context::default()), [0.0; 3]);
        let c = Context::from_pairs([("hurt", "true"), ("site", "face")]).unwrap();
        assert_eq!(c.only(|f| f == "site").used(), ["site"]);
        assert_ne!(head.offsets(&c), [0.0; 3]);
    }
}
