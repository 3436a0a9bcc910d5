//! `[kafka.client]` values read from files, as Kubernetes mounts secrets (kafka.md "Connecting to
//! secured Kafka"): `"sasl.password_file" = "/run/secrets/kafka/password"` sets `sasl.password`
//! to the file's content, without its trailing line break. From the environment the suffix is
//! `.file`: `TRACEWARDEN__KAFKA__CLIENT__SASL_PASSWORD_FILE`. Read once, at load; a property set
//! both ways is refused (which one would win is not obvious).

use std::collections::BTreeMap;

use crate::settings::Problem;

/// Replaces every `…_file` / `….file` key of `client` by the property it names, valued with the
/// file's content.
pub fn read_property_files(client: &mut BTreeMap<String, String>) -> Result<(), Problem> {
    let files: Vec<(String, String, String)> = client
        .iter()
        .filter_map(|(key, path)| {
            let property = key.strip_suffix("_file").or_else(|| key.strip_suffix(".file"))?;
            Some((key.clone(), property.to_string(), path.clone()))
        })
        .collect();
    for (key, property, path) in files {
        let problem = |message: String| Problem { key: format!("kafka.client.{key}"), message };
        if client.contains_key(&property) {
            return Err(problem(format!("{property} is also set: give it once, as a value or as a file")));
        }
        let value = std::fs::read_to_string(&path).map_err(|e| problem(format!("cannot read {path}: {e}")))?;
        client.remove(&key);
        client.insert(property, value.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_property_comes_from_its_file_without_the_line_break() {
        let path = std::env::temp_dir().join(format!("tw-secret-{}", rand::random::<u64>()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut client = BTreeMap::from([
            ("sasl.password_file".to_string(), path.display().to_string()),
            ("sasl.username".to_string(), "tw".to_string()),
        ]);
        read_property_files(&mut client).unwrap();
        assert_eq!(client.get("sasl.password").map(String::as_str), Some("s3cret"));
        assert!(!client.contains_key("sasl.password_file"));
        // From the environment, underscores become dots.
        let mut from_env = BTreeMap::from([("ssl.key.password.file".to_string(), path.display().to_string())]);
        read_property_files(&mut from_env).unwrap();
        assert_eq!(from_env.get("ssl.key.password").map(String::as_str), Some("s3cret"));
        let mut both = BTreeMap::from([
            ("sasl.password_file".to_string(), path.display().to_string()),
            ("sasl.password".to_string(), "other".to_string()),
        ]);
        assert_eq!(read_property_files(&mut both).unwrap_err().key, "kafka.client.sasl.password_file");
        std::fs::remove_file(&path).unwrap();
        let mut missing = BTreeMap::from([("sasl.password_file".to_string(), path.display().to_string())]);
        let problem = read_property_files(&mut missing).unwrap_err();
        assert!(problem.message.contains("cannot read"), "{problem}");
    }
}
