//! Property tests of the parsers and decoders that take input from outside (issue 12,
//! "also build"): whatever the bytes, no panic and no allocation sized by an unchecked
//! length; where the format is ours, what is encoded decodes to the same thing. Each
//! property runs for a fixed time budget (arbtest, 1.5 s each, inputs growing in size).

use arbtest::arbitrary::{self, Unstructured};
use endo_agent::config::Config;
use endo_agent::spool::format::{self, SpoolRecord};
use endo_agent::uplink::mqtt::wire;
use std::path::Path;

/// Time per property, milliseconds.
const BUDGET_MS: u64 = 1500;

fn record(u: &mut Unstructured<'_>) -> arbitrary::Result<SpoolRecord> {
    let key_len = u.int_in_range(1..=200)?;
    let key: String = (0..key_len)
        .map(|_| u.choose(b"abcXYZ019._-/").map(|&c| c as char))
        .collect::<arbitrary::Result<_>>()?;
    Ok(SpoolRecord {
        key,
        quality: u.arbitrary()?,
        created_ms: u.arbitrary()?,
        jpeg: u.arbitrary()?,
        json: u.arbitrary()?,
        annotation: u.arbitrary()?,
    })
}

#[test]
fn a_spool_record_survives_any_bytes_and_round_trips() {
    arbtest::arbtest(|u| {
        let r = record(u)?;
        let bytes = format::encode(&r);
        let back = format::decode(&bytes).expect("what was encoded decodes");
        assert_eq!(back.key, r.key);
        assert_eq!(back.quality.to_bits(), r.quality.to_bits());
        assert_eq!(
            (back.created_ms, &back.jpeg, &back.json, &back.annotation),
            (r.created_ms, &r.jpeg, &r.json, &r.annotation)
        );
        // Any change of one byte is caught (CRC), never a panic or a wrong record.
        if !bytes.is_empty() {
            let i = u.choose_index(bytes.len())?;
            let mut bad = bytes.clone();
            bad[i] ^= u.int_in_range(1..=255)?;
            if let Ok(other) = format::decode(&bad) {
                panic!("a flipped byte {i} decoded as {:?}", other.key);
            }
        }
        // A truncated record is refused.
        let cut = u.choose_index(bytes.len())?;
        assert!(format::decode(&bytes[..cut]).is_err());
        Ok(())
    })
    .budget_ms(BUDGET_MS);
    // Arbitrary bytes, and bytes that start like a record with a huge length.
    arbtest::arbtest(|u| {
        let mut bytes: Vec<u8> = u.arbitrary()?;
        if u.arbitrary()? {
            let head = format::encode(&record(u)?);
            let n = head.len().min(12);
            bytes.splice(0..0, head[..n].iter().copied());
        }
        let _ = format::decode(&bytes);
        Ok(())
    })
    .budget_ms(BUDGET_MS);
}

#[test]
fn an_mqtt_frame_payload_survives_any_bytes_and_round_trips() {
    arbtest::arbtest(|u| {
        let (jpeg, record, annotation): (Vec<u8>, Vec<u8>, Vec<u8>) = u.arbitrary()?;
        let payload = wire::encode(&jpeg, &record, &annotation);
        assert!(wire::is_framed(&payload));
        if record.is_empty() {
            // A message needs its record: refused, not decoded into an empty one. (The
            // JPEG may be empty: a document without an image, the procedure record.)
            assert!(wire::decode(&payload).is_err());
            return Ok(());
        }
        let f = wire::decode(&payload).expect("what was encoded decodes");
        assert_eq!(
            (f.jpeg, f.record, f.annotation),
            (&jpeg[..], &record[..], &annotation[..])
        );
        let cut = u.choose_index(payload.len())?;
        assert!(wire::decode(&payload[..cut]).is_err());
        let junk: Vec<u8> = u.arbitrary()?;
        let _ = wire::decode(&junk);
        Ok(())
    })
    .budget_ms(BUDGET_MS);
}

#[test]
fn an_ingest_message_survives_any_topic_properties_and_payload() {
    use endo_agent::ingest::{frame_of, Route};
    use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    let route = Route {
        topic_prefix: "endo",
        key_prefix: "frames",
    };
    arbtest::arbtest(|u| {
        let topic: String = if u.arbitrary()? {
            "endo/s/d/frames".into()
        } else {
            u.arbitrary()?
        };
        let key: String = if u.arbitrary()? {
            "frames/s/d/2026/12/02/x/0000000001".into()
        } else {
            u.arbitrary()?
        };
        let payload: Vec<u8> = match u.int_in_range(0..=2)? {
            0 => u.arbitrary()?,
            1 => wire::encode(&u.arbitrary::<Vec<u8>>()?, &u.arbitrary::<Vec<u8>>()?, b""),
            _ => {
                let jpeg: Vec<u8> = u.arbitrary()?;
                let rec = format!(
                    r#"{{"key":{key:?},"jpeg":{{"bytes":{},"sha256":"00"}}}}"#,
                    jpeg.len()
                );
                wire::encode(&jpeg, rec.as_bytes(), &u.arbitrary::<Vec<u8>>()?)
            }
        };
        let mut props: Vec<(String, String)> = u.arbitrary()?;
        props.insert(0, ("key".into(), key));
        let p = Publish::new(
            topic,
            QoS::AtLeastOnce,
            payload,
            Some(PublishProperties {
                user_properties: props,
                ..Default::default()
            }),
        );
        if let Ok(f) = frame_of(&p, &route) {
            // Whatever is accepted is under the topic's own site and device.
            assert!(f.key.starts_with("frames/s/d/"), "{}", f.key);
        }
        Ok(())
    })
    .budget_ms(BUDGET_MS);
}

/// Keys of the config with a value of each type, for configs built from pieces.
const KEYS: &[(&str, &str)] = &[
    ("agent", "site"),
    ("source", "fps"),
    ("source", "width"),
    ("capture", "queue_frames"),
    ("fov", "masks"),
    ("fov", "rect"),
    ("fov", "mode"),
    ("scoring", "noise_sigma"),
    ("scoring", "model_weight"),
    ("select", "window_ms"),
    ("select", "max_per_second"),
    ("encode", "queue_frames"),
    ("spool", "max_mib"),
    ("spool", "dir"),
    ("datalake", "dir"),
    ("mqtt", "port"),
    ("http", "listen"),
    ("operator", "labels"),
    ("nosuch", "key"),
];

fn value(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=7)? {
        0 => u.arbitrary::<i64>()?.to_string(),
        1 => u.arbitrary::<u64>()?.to_string(),
        2 => format!("{:?}", u.arbitrary::<f64>()?).replace("NaN", "nan"),
        3 => format!("{:?}", u.arbitrary::<String>()?),
        4 => format!("[{}, {}]", u.arbitrary::<f32>()?, u.arbitrary::<f32>()?),
        5 => format!(
            "[[{}, {}, {}, {}]]",
            u.arbitrary::<u32>()?,
            u.arbitrary::<u32>()?,
            u.arbitrary::<u32>()?,
            u.arbitrary::<u32>()?
        ),
        6 => u.arbitrary::<bool>()?.to_string(),
        _ => u.arbitrary::<String>()?,
    })
}

#[test]
fn a_config_of_any_keys_and_values_is_accepted_or_refused_naming_the_file() {
    let path = Path::new("/etc/endo-agent/prop.toml");
    arbtest::arbtest(|u| {
        let mut text = String::new();
        for _ in 0..u.int_in_range(1..=6)? {
            let (section, key) = *u.choose(KEYS)?;
            text += &format!("[{section}]\n{key} = {}\n", value(u)?);
        }
        match Config::parse(&text, path, Path::new("/etc/endo-agent")) {
            Ok(c) => {
                // Accepted: within every documented range.
                for (key, v, lo, hi) in c.int_ranges() {
                    assert!((lo..=hi).contains(&v), "{key} = {v} accepted");
                }
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("prop.toml"), "{e}");
                assert!(e.len() < 4000, "{} bytes of error", e.len());
            }
        }
        Ok(())
    })
    .budget_ms(BUDGET_MS);
    // And text that is not TOML at all.
    arbtest::arbtest(|u| {
        let text: String = u.arbitrary()?;
        let _ = Config::parse(&text, path, Path::new("/etc/endo-agent"));
        Ok(())
    })
    .budget_ms(BUDGET_MS / 2);
}

#[test]
fn a_phantom_schedule_of_any_text_parses_or_is_refused() {
    use endo_agent::phantom::schedule::Schedule;
    const WORDS: &[&str] = &[
        "good",
        "defocus",
        "motion",
        "dark",
        "overexposed",
        "glare",
        "outside",
        "noise",
        "s",
        "ms",
        "sigma=",
        "len=",
        "angle=",
        "gain=",
        ";",
        " ",
        "1",
        "0",
        "-3",
        "1e9",
        "nan",
        "2.5",
    ];
    arbtest::arbtest(|u| {
        let text: String = if u.arbitrary()? {
            (0..u.int_in_range(0..=12)?)
                .map(|_| u.choose(WORDS).copied())
                .collect::<arbitrary::Result<Vec<_>>>()?
                .concat()
        } else {
            u.arbitrary()?
        };
        let _ = Schedule::parse(&text);
        Ok(())
    })
    .budget_ms(BUDGET_MS);
}

#[test]
fn an_annotation_body_of_any_geometry_is_validated_without_panic() {
    use endo_agent::config::OperatorConfig;
    use endo_agent::operator::AnnotationRequest;
    let cfg = OperatorConfig::default();
    arbtest::arbtest(|u| {
        let n = u.int_in_range(0..=40)?;
        let mut shapes = Vec::new();
        for _ in 0..n {
            let f = |u: &mut Unstructured<'_>| -> arbitrary::Result<f64> {
                Ok(match u.int_in_range(0..=3)? {
                    0 => u.arbitrary()?,
                    1 => f64::from(u.int_in_range(-10i32..=2000)?),
                    2 => f64::NAN,
                    _ => f64::INFINITY,
                })
            };
            if u.arbitrary()? {
                shapes.push(serde_json::json!({"type": "rect", "x": f(u)?, "y": f(u)?, "width": f(u)?, "height": f(u)?}));
            } else {
                let pts: Vec<[f64; 2]> = (0..u.int_in_range(0..=300)?)
                    .map(|_| Ok([f(u)?, f(u)?]))
                    .collect::<arbitrary::Result<_>>()?;
                shapes.push(serde_json::json!({"type": "polygon", "points": pts}));
            }
        }
        let label = u.choose(&["ulcer", "polyp", "x", ""])?;
        let body = serde_json::json!({"frame": u.arbitrary::<u64>()?, "label": label, "shapes": shapes});
        if let Ok(req) = serde_json::from_value::<AnnotationRequest>(body) {
            let (w, h) = (u.int_in_range(0..=4096)?, u.int_in_range(0..=4096)?);
            let _ = req.validate(&cfg, w, h);
        }
        Ok(())
    })
    .budget_ms(BUDGET_MS);
}
