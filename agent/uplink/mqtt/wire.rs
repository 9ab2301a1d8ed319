//! What a frame message is on the wire, and whether a message can be sent at all. Pure:
//! no network. The format is documented in the header of [`super`] (and in
//! docs/uplink.md); this file is its one encoder and decoder.
//!
//! Two limits decide whether an MQTT 5 PUBLISH can ever leave: every string or binary
//! field (topic, content type, each user property name and value, …) carries a 2-byte
//! length, so at most 65,535 bytes; and the whole packet must fit both the protocol's
//! remaining-length bound and the broker's `maximum_packet_size` from its CONNACK.
//! [`check_publish`] checks all of them before a message is handed to rumqttc, which would
//! otherwise write a truncated length (a malformed packet the broker drops the connection
//! over) or fail the connection.

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;

/// First bytes of a framed frame payload. A JPEG starts with `FF D8`, so a payload from an
/// agent before this format (the bare JPEG) is never mistaken for one.
pub const MAGIC: [u8; 4] = *b"EAFR";
/// The only header version so far.
pub const VERSION: u8 = 1;
/// Magic, version, three u32 lengths.
pub const HEADER_LEN: usize = 4 + 1 + 3 * 4;
/// Content type of a framed frame message.
pub const CONTENT_TYPE: &str = "application/vnd.endo-agent.frame.v1";

/// Longest MQTT string or binary field (its length is a u16).
pub const MAX_STRING: usize = u16::MAX as usize;
/// Largest packet the protocol can express: fixed header byte, a 4-byte remaining
/// length, and at most 268,435,455 bytes after it.
pub const MAX_PROTOCOL_PACKET: usize = 1 + 4 + 268_435_455;

/// The three parts of a frame, borrowed from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameParts<'a> {
    pub jpeg: &'a [u8],
    pub record: &'a [u8],
    /// Empty when the operator did not annotate the frame.
    pub annotation: &'a [u8],
}

/// The framed payload: header, then JPEG, record and annotation, back to back.
pub fn encode(jpeg: &[u8], record: &[u8], annotation: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + jpeg.len() + record.len() + annotation.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    for part in [jpeg, record, annotation] {
        // A part over 4 GiB is far beyond any packet limit; check_publish refuses the
        // message, so a saturated length is never sent.
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
    }
    out.extend_from_slice(jpeg);
    out.extend_from_slice(record);
    out.extend_from_slice(annotation);
    out
}

/// Whether `payload` claims to be a framed payload (starts with [`MAGIC`]).
pub fn is_framed(payload: &[u8]) -> bool {
    payload.starts_with(&MAGIC)
}

/// Split a framed payload. The lengths must add up to the payload exactly; the record
/// must not be empty (the JPEG is, for a document without an image: a procedure record).
pub fn decode(payload: &[u8]) -> Result<FrameParts<'_>, String> {
    if payload.len() < HEADER_LEN {
        return Err(format!(
            "framed payload of {} bytes is shorter than its {HEADER_LEN}-byte header",
            payload.len()
        ));
    }
    if !is_framed(payload) {
        return Err("payload does not start with the frame magic".into());
    }
    if payload[4] != VERSION {
        return Err(format!(
            "frame payload version {} (known: {VERSION})",
            payload[4]
        ));
    }
    let len = |i: usize| {
        let b = &payload[5 + 4 * i..9 + 4 * i];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    let (j, r, a) = (len(0), len(1), len(2));
    let body = payload.len() - HEADER_LEN;
    let total = j.checked_add(r).and_then(|x| x.checked_add(a));
    if total != Some(body) {
        return Err(format!(
            "frame payload lengths {j} + {r} + {a} do not match its {body} bytes"
        ));
    }
    if r == 0 {
        return Err("frame payload without a record".into());
    }
    let rest = &payload[HEADER_LEN..];
    let (jpeg, rest) = rest.split_at(j);
    let (record, annotation) = rest.split_at(r);
    Ok(FrameParts {
        jpeg,
        record,
        annotation,
    })
}

/// Why a message can never be sent as it is. Each variant is a bounded metric label
/// ([`Oversize::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Oversize {
    #[error("topic of {len} bytes is longer than MQTT's {MAX_STRING}")]
    Topic { len: usize },
    #[error("property {name:?} of {len} bytes is longer than MQTT's {MAX_STRING}")]
    Property { name: String, len: usize },
    #[error("packet of {size} bytes is larger than {max} ({limit})")]
    Packet {
        size: usize,
        max: usize,
        limit: &'static str,
    },
}

impl Oversize {
    /// Every value [`Oversize::reason`] can take.
    pub const REASONS: [&'static str; 3] =
        ["topic_too_long", "property_too_long", "packet_too_large"];

    pub fn reason(&self) -> &'static str {
        match self {
            Oversize::Topic { .. } => "topic_too_long",
            Oversize::Property { .. } => "property_too_long",
            Oversize::Packet { .. } => "packet_too_large",
        }
    }
}

/// The size of a variable byte integer encoding `n`.
fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Check every length-limited field of a PUBLISH and its size against the protocol and
/// `broker_max` (the CONNACK's `maximum_packet_size`, None = not announced). Returns the
/// packet's size in bytes.
pub fn check_publish(
    topic: &str,
    qos: QoS,
    props: Option<&PublishProperties>,
    payload_len: usize,
    broker_max: Option<u32>,
) -> Result<usize, Oversize> {
    if topic.len() > MAX_STRING {
        return Err(Oversize::Topic { len: topic.len() });
    }
    let string = |name: &str, len: usize| {
        if len > MAX_STRING {
            Err(Oversize::Property {
                name: name.to_string(),
                len,
            })
        } else {
            Ok(1 + 2 + len)
        }
    };
    let mut props_len = 0usize;
    if let Some(p) = props {
        if p.payload_format_indicator.is_some() {
            props_len += 2;
        }
        if p.message_expiry_interval.is_some() {
            props_len += 5;
        }
        if p.topic_alias.is_some() {
            props_len += 3;
        }
        if let Some(t) = &p.response_topic {
            props_len += string("response_topic", t.len())?;
        }
        if let Some(d) = &p.correlation_data {
            props_len += string("correlation_data", d.len())?;
        }
        for (k, v) in &p.user_properties {
            if k.len() > MAX_STRING {
                return Err(Oversize::Property {
                    name: format!("user property name {}…", safe_prefix(k)),
                    len: k.len(),
                });
            }
            props_len += string(k, v.len())? + 2 + k.len();
        }
        for id in &p.subscription_identifiers {
            props_len += 1 + varint_len(*id);
        }
        if let Some(t) = &p.content_type {
            props_len += string("content_type", t.len())?;
        }
    }
    let pkid = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining =
        (2 + topic.len() + pkid + varint_len(props_len) + props_len).saturating_add(payload_len);
    let size = (1 + varint_len(remaining)).saturating_add(remaining);
    if size > MAX_PROTOCOL_PACKET {
        return Err(Oversize::Packet {
            size,
            max: MAX_PROTOCOL_PACKET,
            limit: "the MQTT protocol's limit",
        });
    }
    if let Some(max) = broker_max {
        if size > max as usize {
            return Err(Oversize::Packet {
                size,
                max: max as usize,
                limit: "the broker's maximum_packet_size",
            });
        }
    }
    Ok(size)
}

/// The first few characters of a name, for a message that must not echo 64 kB.
fn safe_prefix(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::Publish;

    fn props(users: Vec<(String, String)>) -> PublishProperties {
        PublishProperties {
            content_type: Some(CONTENT_TYPE.into()),
            user_properties: users,
            ..Default::default()
        }
    }

    #[test]
    fn a_framed_payload_round_trips_and_a_jpeg_is_not_one() {
        let p = encode(b"\xff\xd8jpeg", b"{\"key\":\"k\"}", b"");
        assert!(is_framed(&p));
        let f = decode(&p).unwrap();
        assert_eq!(f.jpeg, b"\xff\xd8jpeg");
        assert_eq!(f.record, b"{\"key\":\"k\"}");
        assert!(f.annotation.is_empty());
        let p = encode(b"j", b"r", b"{\"annotations\":[]}");
        assert_eq!(decode(&p).unwrap().annotation, b"{\"annotations\":[]}");
        assert!(!is_framed(b"\xff\xd8\xff\xe0 a bare JPEG"));
    }

    #[test]
    fn malformed_payloads_are_refused_without_panicking() {
        let good = encode(b"jpeg", b"record", b"ann");
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().contains("do not match"));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert!(decode(&v2).unwrap_err().contains("version 2"));
        // Lengths that overflow when added.
        let mut huge = good.clone();
        huge[5..17].fill(0xff);
        assert!(decode(&huge).is_err());
        // A document without an image (a procedure record) is a record alone.
        let doc = encode(b"", b"r", b"");
        let doc = decode(&doc).expect("a record without a JPEG");
        assert!(doc.jpeg.is_empty() && doc.record == b"r");
        assert!(decode(&encode(b"j", b"", b"")).is_err(), "no record");
    }

    #[test]
    fn the_size_check_agrees_with_rumqttc_on_the_packet_size() {
        for (topic, users, payload) in [
            (
                "endo/s/d/frames",
                vec![("key".to_string(), "k".repeat(60))],
                100,
            ),
            ("t", vec![], 0),
            (
                "endo/s/d/frames",
                vec![("a".into(), "b".repeat(20_000))],
                300_000,
            ),
            (
                "endo/s/d/frames",
                vec![("key".into(), "x".into()); 40],
                3_000_000,
            ),
        ] {
            let p = props(users);
            let mut publish =
                Publish::new(topic, QoS::AtLeastOnce, vec![0u8; payload], Some(p.clone()));
            publish.pkid = 1;
            assert_eq!(
                check_publish(topic, QoS::AtLeastOnce, Some(&p), payload, None),
                Ok(publish.size()),
                "{topic} {payload}"
            );
        }
        let p = Publish::new("s", QoS::AtMostOnce, vec![1u8; 10], None);
        assert_eq!(
            check_publish("s", QoS::AtMostOnce, None, 10, None),
            Ok(p.size())
        );
    }

    #[test]
    fn a_property_or_topic_over_64k_is_refused_before_sending() {
        // The issue: a 118 kB annotation as a user property.
        let ann = "x".repeat(118_000);
        let p = props(vec![("key".into(), "k".into()), ("annotation".into(), ann)]);
        let e = check_publish("endo/s/d/frames", QoS::AtLeastOnce, Some(&p), 10, None).unwrap_err();
        assert_eq!(e.reason(), "property_too_long");
        assert!(e.to_string().contains("\"annotation\""), "{e}");
        // Exactly at the limit is fine; one byte more is not.
        let at = props(vec![("record".into(), "r".repeat(MAX_STRING))]);
        assert!(check_publish("t", QoS::AtLeastOnce, Some(&at), 0, None).is_ok());
        let over = props(vec![("record".into(), "r".repeat(MAX_STRING + 1))]);
        assert!(check_publish("t", QoS::AtLeastOnce, Some(&over), 0, None).is_err());
        let name = props(vec![("n".repeat(MAX_STRING + 1), String::new())]);
        let e = check_publish("t", QoS::AtLeastOnce, Some(&name), 0, None).unwrap_err();
        assert_eq!(e.reason(), "property_too_long");
        assert!(e.to_string().len() < 200, "the name is not echoed whole");
        let ct = PublishProperties {
            content_type: Some("c".repeat(70_000)),
            ..Default::default()
        };
        assert!(check_publish("t", QoS::AtLeastOnce, Some(&ct), 0, None).is_err());
        let topic = "t".repeat(MAX_STRING + 1);
        let e = check_publish(&topic, QoS::AtLeastOnce, None, 0, None).unwrap_err();
        assert_eq!(e.reason(), "topic_too_long");
        assert!(Oversize::REASONS.contains(&e.reason()));
    }

    #[test]
    fn a_packet_over_the_brokers_maximum_is_refused() {
        let p = props(vec![("key".into(), "k".into())]);
        let size = check_publish("t", QoS::AtLeastOnce, Some(&p), 1000, None).unwrap();
        let max = Some(size as u32);
        assert_eq!(
            check_publish("t", QoS::AtLeastOnce, Some(&p), 1000, max),
            Ok(size)
        );
        let e = check_publish("t", QoS::AtLeastOnce, Some(&p), 1001, max).unwrap_err();
        assert_eq!(e.reason(), "packet_too_large");
        assert!(e.to_string().contains("maximum_packet_size"), "{e}");
        let e = check_publish("t", QoS::AtLeastOnce, None, 300 << 20, None).unwrap_err();
        assert_eq!(e.reason(), "packet_too_large");
    }

    #[test]
    fn a_frame_with_the_largest_annotation_fits_as_a_framed_payload() {
        // 32 polygons × 256 points, as docs/operator.md allows, and a 1080p-sized JPEG.
        let ann = "[1234.56,789.01],".repeat(32 * 256);
        let payload = encode(&vec![0u8; 400_000], &[b'r'; 3000], ann.as_bytes());
        let p = props(vec![("key".into(), "k".repeat(80))]);
        assert!(check_publish(
            "endo/s/d/frames",
            QoS::AtLeastOnce,
            Some(&p),
            payload.len(),
            None
        )
        .is_ok());
    }
}
