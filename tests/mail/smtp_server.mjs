// A real SMTP server for crates/cli/tests/mail.rs, on 127.0.0.1.
//
//   node smtp_server.mjs --port 0 --cert CERT.pem --key KEY.pem --user U --pass P --out DIR [--implicit]
//
// STARTTLS (or, with --implicit, TLS from the first byte) with the test's certificate; AUTH is
// required and refused before TLS. Every message received is parsed (mailparser) and written to
// DIR as one JSON file (written to a temporary name, then renamed, so the test never reads half a
// file). The first line on stdout is {"port": N} once the server listens.
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (!a.startsWith("--")) continue;
  const next = process.argv[i + 1];
  if (next === undefined || next.startsWith("--")) args[a.slice(2)] = true;
  else args[a.slice(2)] = process.argv[++i];
}

let count = 0;
const server = new SMTPServer({
  secure: Boolean(args.implicit),
  key: readFileSync(args.key),
  cert: readFileSync(args.cert),
  authMethods: ["PLAIN", "LOGIN"],
  // AUTH only over TLS: the password never crosses the wire in clear.
  allowInsecureAuth: false,
  authOptional: false,
  disabledCommands: [],
  logger: false,
  onAuth(auth, session, callback) {
    if (!session.secure) return callback(new Error("TLS first"));
    if (auth.username === args.user && auth.password === args.pass) return callback(null, { user: auth.username });
    return callback(new Error("Invalid username or password"));
  },
  onData(stream, session, callback) {
    simpleParser(stream)
      .then((mail) => {
        const n = ++count;
        const record = {
          envelope_from: session.envelope.mailFrom && session.envelope.mailFrom.address,
          envelope_to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user,
          secure: session.secure,
          from: mail.from && mail.from.text,
          to: mail.to && mail.to.text,
          subject: mail.subject,
          text: mail.text,
          html: mail.html || null,
          received_at: Date.now(),
        };
        const tmp = join(args.out, `.${process.pid}-${n}.tmp`);
        writeFileSync(tmp, JSON.stringify(record));
        renameSync(tmp, join(args.out, `${Date.now()}-${process.pid}-${n}.json`));
        callback();
      })
      .catch((e) => callback(e));
  },
});
server.on("error", (e) => {
  console.error("smtp server error:", e.message);
});
server.listen(Number(args.port || 0), "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.server.address().port }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
