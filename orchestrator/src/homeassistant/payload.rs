//! Home Assistant's device-discovery payload (HA 2024.11+), as far as we
//! use it: one device, its origin, the availability and state topics its
//! components inherit, and the components. Published by the orchestrator
//! only, so it lives here and not in `common::wire`.
//!
//! Key names are Home Assistant's: the device-level abbreviations of its
//! own example (`dev`, `ids`, `mf`, `mdl`, `sw`, `o`, `cmps`, `p`), every
//! entity option in full. An option left `None` is not sent.

use std::collections::BTreeMap;

use serde::Serialize;

/// The retained message on `{prefix}/device/{object_id}/config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceConfig {
    pub dev: Device,
    /// Who publishes the config; Home Assistant requires one for a device.
    pub o: Origin,
    /// Inherited by every component that names none of its own.
    pub availability_topic: String,
    pub payload_available: &'static str,
    pub payload_not_available: &'static str,
    /// Inherited by every component that names none of its own.
    pub state_topic: String,
    /// The entities, by the key Home Assistant names them with in the device.
    pub cmps: BTreeMap<&'static str, Component>,
}

/// The device as Home Assistant's device registry shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// Identifiers: the device's object id, so that its config topic and
    /// its registry entry name the same thing.
    pub ids: Vec<String>,
    pub name: String,
    /// Manufacturer.
    pub mf: &'static str,
    /// Model.
    pub mdl: String,
    /// Software version, when the device told us.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw: Option<String>,
}

/// The software that published the config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    pub name: &'static str,
    pub sw: String,
}

/// What kind of entity a component is: it decides which options Home
/// Assistant requires (a sensor's state topic, a button's command topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Sensor,
    BinarySensor,
    Button,
}

/// One entity of a device; its options are Home Assistant's, in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    #[serde(rename = "p")]
    pub platform: Platform,
    /// Unique across everything Home Assistant knows, and stable: the
    /// entity keeps its history and settings across restarts.
    pub unique_id: String,
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
    /// The states an `enum` sensor can take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<&'static str>>,
    /// Where the state is read when not the device's `state_topic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<&'static str>,
    /// Picks the state out of the JSON on the state topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_template: Option<&'static str>,
    /// A binary sensor's payloads for on and off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_on: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_off: Option<&'static str>,
    /// Its own availability, in place of the device's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_topic: Option<String>,
    /// Where a button publishes `payload_press`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_press: Option<&'static str>,
}

impl Component {
    /// A component with only its platform, unique id and name; the other
    /// options are set with struct update syntax.
    pub fn new(platform: Platform, unique_id: String, name: &'static str) -> Component {
        Component {
            platform,
            unique_id,
            name,
            device_class: None,
            options: None,
            state_topic: None,
            unit_of_measurement: None,
            state_class: None,
            value_template: None,
            json_attributes_topic: None,
            json_attributes_template: None,
            payload_on: None,
            payload_off: None,
            availability_topic: None,
            command_topic: None,
            payload_press: None,
        }
    }
}
