//! The options of each platform we publish: a sensor's device class, unit
//! and state class, a binary sensor's device class, as Home Assistant
//! checks them.

use serde_json::{Map, Value};

/// Sensor device classes and the units Home Assistant accepts with them; an
/// empty list: the class takes no unit. A sensor without a device class may
/// have any unit.
const SENSOR_UNITS: &[(&str, &[&str])] = &[
    ("battery", &["%"]),
    (
        "data_rate",
        &[
            "bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s",
            "GiB/s",
        ],
    ),
    (
        "data_size",
        &[
            "bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
            "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB",
        ],
    ),
    ("date", &[]),
    ("duration", &["d", "h", "min", "s", "ms", "μs"]),
    ("energy", &["Wh", "kWh", "MWh", "GWh", "TWh", "MJ", "GJ"]),
    ("enum", &[]),
    ("frequency", &["Hz", "kHz", "MHz", "GHz"]),
    ("humidity", &["%"]),
    ("power", &["mW", "W", "kW", "MW", "GW", "TW", "BTU/h"]),
    ("power_factor", &["%"]),
    ("temperature", &["°C", "°F", "K"]),
    ("timestamp", &[]),
];

const STATE_CLASSES: &[&str] = &[
    "measurement",
    "measurement_angle",
    "total",
    "total_increasing",
];

const BINARY_SENSOR_CLASSES: &[&str] = &[
    "battery",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas",
    "heat",
    "light",
    "lock",
    "moisture",
    "motion",
    "moving",
    "occupancy",
    "opening",
    "plug",
    "power",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "update",
    "vibration",
    "window",
];

fn non_blank<'a>(merged: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    merged
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

pub(super) fn check_sensor(merged: &Map<String, Value>, place: &str, problems: &mut Vec<String>) {
    let device_class = non_blank(merged, "device_class");
    let unit = non_blank(merged, "unit_of_measurement");
    let state_class = non_blank(merged, "state_class");

    if let Some(sc) = state_class {
        if !STATE_CLASSES.contains(&sc) {
            problems.push(format!(
                "{place} has state_class `{sc}`, not one of {}.",
                STATE_CLASSES.join(", ")
            ));
        }
    }
    if let Some(options) = merged.get("options") {
        if options.as_array().is_none_or(|o| o.is_empty()) {
            problems.push(format!(
                "{place} has `options` that is not a non-empty list."
            ));
        }
        if device_class != Some("enum") {
            problems.push(format!(
                "{place} has `options` but device_class {}; options need device_class `enum`.",
                device_class.map_or("is not set".to_string(), |d| format!("`{d}`"))
            ));
        }
        if let Some(unit) = unit {
            problems.push(format!(
                "{place} has `options` together with unit_of_measurement `{unit}`; Home Assistant refuses that."
            ));
        }
        if let Some(sc) = state_class {
            problems.push(format!(
                "{place} has `options` together with state_class `{sc}`; Home Assistant refuses that."
            ));
        }
    } else if device_class == Some("enum") {
        problems.push(format!(
            "{place} has device_class `enum` but no `options` listing its states."
        ));
    }

    let Some(dc) = device_class else {
        return; // no device class: any unit
    };
    match SENSOR_UNITS.iter().find(|(class, _)| *class == dc) {
        None => problems.push(format!(
            "{place} has device_class `{dc}`, which this checker does not know the units of."
        )),
        Some((_, [])) => {
            if let Some(unit) = unit {
                problems.push(format!(
                    "{place} has unit_of_measurement `{unit}`, but device_class `{dc}` takes no unit."
                ));
            }
        }
        Some((_, units)) => match unit {
            Some(unit) if units.contains(&unit) => {}
            Some(unit) => problems.push(format!(
                "{place} has unit_of_measurement `{unit}`, which does not fit device_class `{dc}` (allowed: {}).",
                units.join(", ")
            )),
            None => problems.push(format!(
                "{place} has device_class `{dc}` but no unit_of_measurement (allowed: {}).",
                units.join(", ")
            )),
        },
    }
}

pub(super) fn check_binary_sensor(
    merged: &Map<String, Value>,
    place: &str,
    problems: &mut Vec<String>,
) {
    let device_class = non_blank(merged, "device_class");
    if let Some(dc) = device_class {
        if !BINARY_SENSOR_CLASSES.contains(&dc) {
            problems.push(format!(
                "{place} has device_class `{dc}`, not a binary_sensor device class Home Assistant knows."
            ));
        }
    }
    if let Some(unit) = non_blank(merged, "unit_of_measurement") {
        problems.push(format!(
            "{place} has unit_of_measurement `{unit}`, but a binary_sensor (device_class `{}`) takes no unit.",
            device_class.unwrap_or("none")
        ));
    }
    for key in ["options", "state_class"] {
        if merged.contains_key(key) {
            problems.push(format!(
                "{place} has `{key}`, which a binary_sensor does not take."
            ));
        }
    }
}
