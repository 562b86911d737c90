//! `WebhookUrl::parse` under the strict policy: no panic; an accepted URL
//! parses again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_domain::address::AddressPolicy;
use webhook_domain::webhook::WebhookUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = AddressPolicy::new(Vec::new(), false);
    for insecure in [false, true] {
        if let Ok(url) = WebhookUrl::parse(text, &policy, insecure) {
            let again = WebhookUrl::parse(url.as_str(), &policy, insecure).expect("re-parses");
            assert_eq!(again.as_str(), url.as_str());
        }
    }
});
