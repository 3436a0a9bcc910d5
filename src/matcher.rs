//! Matching used by configuration rules (metric exclusions, sampling rules, SLO selectors):
//! X-Ray wildcards and attribute conditions.

use regex::Regex;
use serde::Deserialize;

use crate::format::AttributeLookup;
use crate::model::{AttrValue, Span};

/// An AWS X-Ray style wildcard: `*` any run of characters, `?` exactly one, case-insensitive.
#[derive(Clone, Debug)]
pub struct Wildcard {
    pattern: Vec<char>,
    /// The pattern's bytes when it is ASCII: ASCII text then matches without allocating.
    ascii: Option<Vec<u8>>,
}

impl Wildcard {
    pub fn new(pattern: &str) -> Self {
        let lower = pattern.to_lowercase();
        Self { ascii: lower.is_ascii().then(|| lower.as_bytes().to_vec()), pattern: lower.chars().collect() }
    }

    /// Iterative glob matching with single-star backtracking: linear in practice, no recursion.
    /// ASCII pattern and text (the usual service and operation names) allocate nothing.
    pub fn matches(&self, text: &str) -> bool {
        match &self.ascii {
            Some(pattern) if text.is_ascii() => {
                let bytes = text.as_bytes();
                glob(pattern, bytes.len(), |i| bytes[i].to_ascii_lowercase(), b'?', b'*')
            }
            _ => {
                let text: Vec<char> = text.to_lowercase().chars().collect();
                glob(&self.pattern, text.len(), |i| text[i], '?', '*')
            }
        }
    }
}

fn glob<T: Copy + PartialEq>(p: &[T], len: usize, text: impl Fn(usize) -> T, one: T, run: T) -> bool {
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < len {
        if pi < p.len() && (p[pi] == one || p[pi] == text(ti)) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == run {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == run {
        pi += 1;
    }
    pi == p.len()
}

impl<'de> Deserialize<'de> for Wildcard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Wildcard::new(&s))
    }
}

/// `{ key, equals | matches | regex | min | max | exists }`: a condition on one attribute.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeCondition {
    /// The attribute key (span attributes first, then resource attributes).
    pub key: String,
    /// Holds when the value, as text, equals this exactly.
    pub equals: Option<String>,
    /// Holds when the value, as text, matches this X-Ray wildcard.
    pub matches: Option<Wildcard>,
    /// Holds when the value, as text, matches this regular expression.
    #[serde(default, with = "regex_serde")]
    pub regex: Option<Regex>,
    /// Holds when the value is a number at least this.
    pub min: Option<f64>,
    /// Holds when the value is a number at most this.
    pub max: Option<f64>,
    /// Holds when the attribute is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

mod regex_serde {
    use regex::Regex;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Regex::new(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

impl AttributeCondition {
    /// Whether exactly one test is given (checked by configuration validation).
    pub fn test_count(&self) -> usize {
        [
            self.equals.is_some(),
            self.matches.is_some(),
            self.regex.is_some(),
            self.min.is_some() || self.max.is_some(),
            self.exists.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    pub fn holds_for_value(&self, value: Option<&AttrValue>) -> bool {
        if let Some(exists) = self.exists {
            return value.is_some() == exists;
        }
        let Some(value) = value else { return false };
        if self.min.is_some() || self.max.is_some() {
            let Some(n) = value.as_f64() else { return false };
            return self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m);
        }
        let Some(text) = value.as_text() else { return false };
        if let Some(equals) = &self.equals {
            return &text == equals;
        }
        if let Some(pattern) = &self.matches {
            return pattern.matches(&text);
        }
        if let Some(re) = &self.regex {
            return re.is_match(&text);
        }
        true
    }

    pub fn holds(&self, span: &Span) -> bool {
        self.holds_for_value(span.attribute(&self.key).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("checkout*", "checkout-service", true),
            ("checkout*", "Checkout", true),
            ("CHECKOUT", "checkout", true),
            ("ch?ckout", "checkout", true),
            ("ch?ckout", "chckout", false),
            ("?", "", false),
            ("*-api", "orders-api", true),
            ("*-api", "orders-apis", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("ELB-HealthChecker*", "ELB-HealthChecker/2.0", true),
            ("", "", true),
            ("", "x", false),
            ("ÜBER*", "über-service", true),
            ("*ß", "straße", false),
            ("*ß?", "straße", true),
            ("caf?", "café", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Wildcard::new(pattern).matches(text), expected, "{pattern:?} vs {text:?}");
        }
    }

    proptest::proptest! {
        /// The allocation-free ASCII path decides exactly as the general one.
        #[test]
        fn ascii_path_agrees(pattern in "[aB?*-]{0,6}", text in "[abAB-]{0,8}") {
            let fast = Wildcard::new(&pattern);
            let general = Wildcard { ascii: None, ..fast.clone() };
            proptest::prop_assert_eq!(fast.matches(&text), general.matches(&text));
        }
    }

    #[test]
    fn attribute_tests() {
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nmin = 10\nmax = 20").unwrap();
        assert!(cond.holds_for_value(Some(&AttrValue::Int(15))));
        assert!(!cond.holds_for_value(Some(&AttrValue::Int(25))));
        assert!(!cond.holds_for_value(None));
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nexists = false").unwrap();
        assert!(cond.holds_for_value(None));
        let cond: AttributeCondition = toml::from_str("key = \"k\"\nregex = \"^GET /a.*$\"").unwrap();
        assert!(cond.holds_for_value(Some(&AttrValue::Str("GET /abc".into()))));
        assert!(toml::from_str::<AttributeCondition>("key = \"k\"\nregex = \"(\"").is_err());
    }
}
