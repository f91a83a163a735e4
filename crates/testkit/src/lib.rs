pub mod fake_attio;
pub mod fake_common;
pub mod fake_google;
pub mod fake_llm;
pub mod fake_notion;
pub mod fake_s3;
pub mod fake_smtp;
pub mod process;
