//! `myelin config example`: a fully commented TOML file generated from the config structs'
//! own doc comments (through their JSON schema) and their defaults, so the example cannot drift.

use crate::Config;
use serde_json::{Map, Value};

/// The commented example configuration, every key with its default.
pub fn example_toml() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# Myelin configuration. Every key is optional; shown are the defaults.\n\
         # Any key can be set from the environment instead: MYELIN_ + the key path in capitals,\n\
         # with __ between levels, e.g. MYELIN_DATABASE__URL or MYELIN_REGISTRATION__ENABLED.\n\n",
    );
    write_table(&schema, &schema, &defaults, &mut Vec::new(), &mut out);
    out
}

/// Follows `$ref`, and unwraps the `anyOf [T, null]` that schemars emits for `Option<T>`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(target) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, target);
        }
    }
    if let Some(variants) = schema.get("anyOf").and_then(Value::as_array)
        && let Some(inner) = variants.iter().find(|v| v.get("type") != Some(&Value::from("null")))
    {
        return resolve(root, inner);
    }
    schema
}

fn is_table(root: &Value, schema: &Value) -> bool {
    resolve(root, schema).get("properties").is_some()
}

fn comment(text: &str, out: &mut String) {
    for line in text.lines() {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
}

fn write_table(root: &Value, schema: &Value, defaults: &Value, path: &mut Vec<String>, out: &mut String) {
    let schema = resolve(root, schema);
    let empty = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    // TOML wants a table's plain keys before its sub-tables.
    for (key, property) in properties.iter().filter(|(_, p)| !is_table(root, p)) {
        if let Some(description) = property.get("description").and_then(Value::as_str) {
            comment(description, out);
        }
        match defaults.get(key).and_then(toml_value) {
            Some(value) => out.push_str(&format!("{key} = {value}\n\n")),
            None => out.push_str(&format!("# {key} =\n\n")),
        }
    }
    for (key, property) in properties.iter().filter(|(_, p)| is_table(root, p)) {
        path.push(key.clone());
        if let Some(description) = property.get("description").and_then(Value::as_str) {
            comment(description, out);
        }
        out.push_str(&format!("[{}]\n", path.join(".")));
        write_table(root, property, defaults.get(key).unwrap_or(&Value::Null), path, out);
        path.pop();
    }
}

/// One value in TOML syntax; `None` for a null (an unset optional key).
fn toml_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<String> = items.iter().filter_map(toml_value).collect();
            Some(format!("[{}]", items.join(", ")))
        }
        // Inline tables, so arrays of tables (thumbnail sizes) stay on the key's line.
        Value::Object(map) => {
            let fields: Vec<String> =
                map.iter().filter_map(|(k, v)| toml_value(v).map(|v| format!("{k} = {v}"))).collect();
            Some(format!("{{ {} }}", fields.join(", ")))
        }
        other => toml::Value::try_from(other).ok().map(|v| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_back_to_the_defaults() {
        let text = example_toml();
        let parsed: Config = toml::from_str(&text).expect("the example is valid config");
        assert_eq!(serde_json::to_value(parsed).unwrap(), serde_json::to_value(Config::default()).unwrap());
        for key in [
            "server_name = \"localhost\"",
            "[database]",
            "[rate_limits.login]",
            "# url =",
            "{ height = 32, method = \"crop\", width = 32 }",
        ] {
            assert!(text.contains(key), "missing {key} in\n{text}");
        }
        assert!(text.contains("# Whether anyone may register"), "{text}");
    }
}
