//! Event JSON → `EventInput` → `validate` → `envelope_bytes`: no panic; an
//! envelope is valid JSON naming the event's id and type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::envelope::EventInput;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<EventInput>(data) else {
        return;
    };
    if let Ok(event) = input.validate(1_735_689_600_000) {
        let bytes = event.envelope_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(json["id"], event.id.to_string());
        assert_eq!(json["eventType"], event.event_type.to_string());
    }
});
