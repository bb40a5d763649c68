// Verifies webhook deliveries with the Standard Webhooks authors' own library (npm
// `standardwebhooks`), independently of Gatehouse's Rust code. Reads one JSON object per line on
// stdin: {"secret", "headers": {"webhook-id", "webhook-timestamp", "webhook-signature"}, "body"}.
// Writes one line per input: "ok" or "invalid: <reason>".
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    const { secret, headers, body } = JSON.parse(line);
    new Webhook(secret).verify(body, headers);
    console.log("ok");
  } catch (error) {
    console.log(`invalid: ${String(error && error.message ? error.message : error).replace(/\n/g, " ")}`);
  }
}
