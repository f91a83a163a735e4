"""Drives a crewgate gateway with the stock OpenAI Python client (see ../openai_python.rs).

Usage: python openai_client.py BASE_URL API_KEY AGENT_ID
Prints one JSON object with what each call returned.
"""

import json
import sys

import openai

base_url, api_key, agent = sys.argv[1:4]
model = f"crewgate/{agent}"
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
out = {}

r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello from python"}])
out["non_stream"] = r.choices[0].message.content
out["model"] = r.model
out["finish_reason"] = r.choices[0].finish_reason
out["usage_total"] = r.usage.total_tokens if r.usage else None

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "stream from python"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces = []
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
out["stream"] = "".join(pieces)
out["stream_pieces"] = len(pieces)

raw = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "first in py-session"}], user="py-session"
)
out["session"] = raw.headers.get("x-crewgate-session-id")
r2 = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "second in py-session"}], user="py-session"
)
out["session_again"] = r2.headers.get("x-crewgate-session-id")
out["second"] = r2.parse().choices[0].message.content

out["models"] = [m.id for m in client.models.list()]

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "trigger failure"}])
    out["error_status"] = None
except openai.APIStatusError as e:
    out["error_status"] = e.status_code
    out["error_message"] = e.message

# A failure after the stream started arrives as an `error` chunk, which the client raises.
try:
    for _ in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "trigger stream failure"}], stream=True
    ):
        pass
    out["stream_error"] = None
except openai.APIError as e:
    out["stream_error"] = e.message

try:
    client.chat.completions.create(model="crewgate/someone-else", messages=[{"role": "user", "content": "hi"}])
    out["foreign_status"] = None
except openai.NotFoundError as e:
    out["foreign_status"] = e.status_code

print(json.dumps(out))
