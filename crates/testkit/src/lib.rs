pub mod fake_llm;
pub mod fake_s3;
