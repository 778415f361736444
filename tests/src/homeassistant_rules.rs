//! Home Assistant's rules for MQTT device discovery, as a checker the
//! tests run every payload of ours through (Home Assistant itself only
//! logs a payload it refuses). Written from its documentation and source
//! (see `NOTES.md`, "Home Assistant MQTT discovery"), not from our
//! generator: the object id's characters, the abbreviations, the platforms
//! and their options are its own.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// The characters Home Assistant allows in an object id.
fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

/// Home Assistant's abbreviations (the subset a checker of sensors, binary
/// sensors and buttons meets), for the payload root, each component and each
/// availability entry.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("avty_t", "availability_topic"),
    ("avty_tpl", "availability_template"),
    ("cmd_t", "command_topic"),
    ("cmd_tpl", "command_template"),
    ("cmps", "components"),
    ("def_ent_id", "default_entity_id"),
    ("dev", "device"),
    ("dev_cla", "device_class"),
    ("json_attr_t", "json_attributes_topic"),
    ("json_attr_tpl", "json_attributes_template"),
    ("o", "origin"),
    ("obj_id", "object_id"),
    ("ops", "options"),
    ("p", "platform"),
    ("pl_avail", "payload_available"),
    ("pl_not_avail", "payload_not_available"),
    ("pl_off", "payload_off"),
    ("pl_on", "payload_on"),
    ("pl_prs", "payload_press"),
    ("stat_cla", "state_class"),
    ("stat_t", "state_topic"),
    ("t", "topic"),
    ("uniq_id", "unique_id"),
    ("unit_of_meas", "unit_of_measurement"),
    ("val_tpl", "value_template"),
];

const DEVICE_ABBREVIATIONS: &[(&str, &str)] = &[
    ("cns", "connections"),
    ("cu", "configuration_url"),
    ("hw", "hw_version"),
    ("ids", "identifiers"),
    ("mdl", "model"),
    ("mdl_id", "model_id"),
    ("mf", "manufacturer"),
    ("sa", "suggested_area"),
    ("sn", "serial_number"),
    ("sw", "sw_version"),
];

const ORIGIN_ABBREVIATIONS: &[(&str, &str)] = &[("sw", "sw_version"), ("url", "support_url")];

/// Root options every component inherits unless it sets them itself
/// (HA's `SHARED_OPTIONS`).
const SHARED_OPTIONS: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "command_topic",
    "payload_available",
    "payload_not_available",
    "state_topic",
];

/// Platforms this checker knows the rules of.
const PLATFORMS: &[&str] = &["sensor", "binary_sensor", "button"];

/// Checks one device discovery payload (already parsed JSON) against Home
/// Assistant's rules; `Err` lists every problem as a sentence.
/// `existing_topic` says whether a state/command/availability topic is one
/// this system publishes or listens to.
pub fn check_config(
    topic: &str,
    config: &Value,
    existing_topic: &dyn Fn(&str) -> bool,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    check_discovery_topic(topic, &mut problems);

    let Some(raw_root) = config.as_object() else {
        problems.push("The payload must be a JSON object.".to_string());
        return Err(problems);
    };
    let root = expand(raw_root, ABBREVIATIONS, "The payload root", &mut problems);

    check_device(root.get("device"), &mut problems);
    check_origin(root.get("origin"), &mut problems);
    if root.contains_key("object_id") {
        problems.push(deprecated_object_id("The payload root"));
    }
    check_topics(
        &root,
        "The shared options at the payload root",
        existing_topic,
        &mut problems,
    );

    match root.get("components") {
        None => problems.push(
            "The payload has no `cmps` (components): a device config needs at least one component."
                .to_string(),
        ),
        Some(Value::Object(components)) if components.is_empty() => problems.push(
            "The payload's `cmps` (components) is empty: a device config needs at least one component."
                .to_string(),
        ),
        Some(Value::Object(components)) => {
            // unique_id -> the component that used it first.
            let mut seen: HashMap<String, String> = HashMap::new();
            for (id, component) in components {
                check_component(id, component, &root, &mut seen, existing_topic, &mut problems);
            }
        }
        Some(_) => problems.push(
            "The payload's `cmps` (components) must be an object of component id to component."
                .to_string(),
        ),
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Rejects a unique_id, or a device identifier, that two different device
/// configs use: Home Assistant would keep only one of the entities/devices.
pub fn check_unique_across(configs: &[Value]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut unique_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut device_ids: BTreeMap<String, usize> = BTreeMap::new();
    let labels: Vec<String> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| match device_identifiers(c).first() {
            Some(id) => format!("config #{i} (device `{id}`)"),
            None => format!("config #{i}"),
        })
        .collect();

    for (i, config) in configs.iter().enumerate() {
        let mut own_devices: Vec<String> = device_identifiers(config);
        own_devices.dedup();
        for id in own_devices {
            if let Some(&first) = device_ids.get(&id) {
                if first != i {
                    problems.push(format!(
                        "Device identifier `{id}` is used by {} and {}.",
                        labels[first], labels[i]
                    ));
                }
            } else {
                device_ids.insert(id, i);
            }
        }
        for id in component_unique_ids(config) {
            match unique_ids.get(&id) {
                Some(&first) if first != i => problems.push(format!(
                    "unique_id `{id}` is used by {} and {}.",
                    labels[first], labels[i]
                )),
                Some(_) => {} // a repeat inside one config: check_config's business
                None => {
                    unique_ids.insert(id, i);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn device_identifiers(config: &Value) -> Vec<String> {
    let device = config.get("dev").or_else(|| config.get("device"));
    let ids = device.and_then(|d| d.get("ids").or_else(|| d.get("identifiers")));
    match ids {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn component_unique_ids(config: &Value) -> Vec<String> {
    let components = config.get("cmps").or_else(|| config.get("components"));
    let Some(components) = components.and_then(Value::as_object) else {
        return Vec::new();
    };
    components
        .values()
        .filter_map(|c| c.get("unique_id").or_else(|| c.get("uniq_id")))
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// `<prefix>/device/<object_id>/config`, with a valid object id.
fn check_discovery_topic(topic: &str, problems: &mut Vec<String>) {
    let levels: Vec<&str> = topic.split('/').collect();
    let n = levels.len();
    let well_formed = n >= 4
        && levels[n - 1] == "config"
        && levels[n - 3] == "device"
        && levels[..n - 3]
            .iter()
            .all(|l| !l.is_empty() && !l.contains(['+', '#']));
    if !well_formed {
        problems.push(format!(
            "Discovery topic `{topic}` is not of the form `<prefix>/device/<object_id>/config`."
        ));
        return;
    }
    let object_id = levels[n - 2];
    if object_id.is_empty() || !object_id.chars().all(valid_id_char) {
        problems.push(format!(
            "Object id `{object_id}` in discovery topic `{topic}` may contain only letters, digits, '_' and '-'."
        ));
    }
}

fn check_device(device: Option<&Value>, problems: &mut Vec<String>) {
    let Some(device) = device else {
        problems.push(
            "The payload has no `dev` (device): a device config needs `dev` with `ids`."
                .to_string(),
        );
        return;
    };
    let Some(device) = device.as_object() else {
        problems.push("The payload's `dev` (device) must be an object.".to_string());
        return;
    };
    let device = expand(device, DEVICE_ABBREVIATIONS, "`dev` (device)", problems);
    let ok = match device.get("identifiers") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        }
        _ => false,
    };
    if !ok {
        problems.push(
            "`dev` (device) has no `ids` (identifiers): give a non-empty string or list of strings."
                .to_string(),
        );
    }
}

fn check_origin(origin: Option<&Value>, problems: &mut Vec<String>) {
    let Some(origin) = origin.and_then(Value::as_object) else {
        problems.push(
            "The payload has no `o` (origin) object: Home Assistant requires `o` with a `name`."
                .to_string(),
        );
        return;
    };
    let origin = expand(origin, ORIGIN_ABBREVIATIONS, "`o` (origin)", problems);
    if origin
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        problems.push("`o` (origin) has no `name`: Home Assistant requires one.".to_string());
    }
}

fn check_component(
    id: &str,
    component: &Value,
    root: &Map<String, Value>,
    seen: &mut HashMap<String, String>,
    existing_topic: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) {
    let Some(raw) = component.as_object() else {
        problems.push(format!("Component `{id}` must be an object."));
        return;
    };
    let own = expand(raw, ABBREVIATIONS, &format!("Component `{id}`"), problems);

    let platform = match own.get("platform") {
        None => {
            problems.push(format!("Component `{id}` has no `p` (platform)."));
            None
        }
        Some(Value::String(p)) if PLATFORMS.contains(&p.as_str()) => Some(p.as_str()),
        Some(p) => {
            problems.push(format!(
                "Component `{id}` has platform {p}, which this checker does not know the rules for (known: {}).",
                PLATFORMS.join(", ")
            ));
            None
        }
    };
    let place = match platform {
        Some(p) => format!("Component `{id}` ({p})"),
        None => format!("Component `{id}`"),
    };

    match own.get("unique_id").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => {
            if let Some(first) = seen.get(uid) {
                problems.push(format!(
                    "{place} repeats unique_id `{uid}` of component `{first}`."
                ));
            } else {
                seen.insert(uid.to_string(), id.to_string());
            }
        }
        _ => problems.push(format!("{place} has no `unique_id`.")),
    }
    if own.contains_key("object_id") {
        problems.push(deprecated_object_id(&place));
    }
    check_topics(&own, &place, existing_topic, problems);

    // The options Home Assistant ends up with: the component's own, plus the
    // shared ones from the root that it does not set.
    let mut merged = own.clone();
    for key in SHARED_OPTIONS {
        if let (false, Some(v)) = (merged.contains_key(*key), root.get(*key)) {
            merged.insert((*key).to_string(), v.clone());
        }
    }
    if merged.contains_key("availability") && merged.contains_key("availability_topic") {
        problems.push(format!(
            "{place} ends up with both `availability` and `availability_topic` (own or shared); Home Assistant accepts only one."
        ));
    }

    match platform {
        Some("sensor") => {
            require(&merged, "state_topic", &place, problems);
            check_sensor(&merged, &place, problems);
        }
        Some("binary_sensor") => {
            require(&merged, "state_topic", &place, problems);
            check_binary_sensor(&merged, &place, problems);
        }
        Some("button") => require(&merged, "command_topic", &place, problems),
        _ => {}
    }
}

fn require(merged: &Map<String, Value>, key: &str, place: &str, problems: &mut Vec<String>) {
    if !merged.contains_key(key) {
        problems.push(format!(
            "{place} has no `{key}`, neither its own nor a shared one at the payload root."
        ));
    }
}

/// Every `*_topic` option and every availability entry of one level (the
/// root or one component) must name a topic of this system.
fn check_topics(
    options: &Map<String, Value>,
    place: &str,
    existing_topic: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) {
    for (key, value) in options {
        if key.ends_with("topic") {
            problems.extend(topic_problem(place, key, Some(value), existing_topic));
        }
    }
    let entries: Vec<&Value> = match options.get("availability") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    for (i, entry) in entries.into_iter().enumerate() {
        match entry.as_object() {
            Some(entry) => {
                let mut ignored = Vec::new();
                let entry = expand(entry, ABBREVIATIONS, "", &mut ignored);
                let key = format!("availability entry #{i} topic");
                problems.extend(topic_problem(
                    place,
                    &key,
                    entry.get("topic"),
                    existing_topic,
                ));
            }
            None => problems.push(format!(
                "{place} has availability entry #{i} that is not an object with a `topic`."
            )),
        }
    }
}

/// What is wrong with one topic option, if anything; a missing one counts
/// as empty.
fn topic_problem(
    place: &str,
    key: &str,
    value: Option<&Value>,
    existing_topic: &dyn Fn(&str) -> bool,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => Some(format!("{place} has an empty {key}.")),
        Some(Value::String(t)) if t.trim().is_empty() => {
            Some(format!("{place} has an empty {key}."))
        }
        Some(Value::String(t)) if !existing_topic(t) => Some(format!(
            "{place} has {key} `{t}`, which is not a topic this system publishes or listens to."
        )),
        Some(Value::String(_)) => None,
        Some(_) => Some(format!("{place} has a {key} that is not a string.")),
    }
}

fn deprecated_object_id(place: &str) -> String {
    format!("{place} sets `object_id`, which Home Assistant deprecated: use `default_entity_id`.")
}

/// Replaces abbreviated keys by their full names; a key given in both
/// spellings is a problem (Home Assistant would silently keep one).
fn expand(
    map: &Map<String, Value>,
    table: &[(&str, &str)],
    place: &str,
    problems: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let full = table
            .iter()
            .find(|(abbr, _)| abbr == key)
            .map_or(key.as_str(), |(_, full)| *full);
        if full != key && map.contains_key(full) {
            problems.push(format!(
                "{place} has both `{key}` and `{full}`; use one spelling."
            ));
            continue;
        }
        out.insert(full.to_string(), value.clone());
    }
    out
}

mod platforms;
#[cfg(test)]
mod tests;

use platforms::{check_binary_sensor, check_sensor};
