// An MCP server written with the TypeScript SDK's server side, with NO authorization of its own:
// `latchkey gate` stands in front of it (crates/cli/tests/mcp_interop.rs). Streamable HTTP at /mcp,
// stateful (the gate must carry `mcp-session-id` both ways), answers as SSE streams (the gate must
// stream them). Its one tool, `whoami`, reports who the gate said the caller is
// (x-latchkey-subject / -scope / -client-id, headers the gate sets after stripping any the client
// sent), so the test sees that the identity reached the upstream.
//
// Usage: node upstream_server.mjs --listen 127.0.0.1:0   (prints "listening on <addr>" once bound)
// It exits when its standard input closes, so it never outlives the test that started it.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const args = process.argv.slice(2);
const listen = args[args.indexOf('--listen') + 1] ?? '127.0.0.1:0';
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];

function mcpServer() {
  const server = new McpServer({ name: 'latchkey-interop-upstream', version: '1.0.0' });
  server.registerTool(
    'whoami',
    { description: 'Who the gate says the caller is' },
    async (extra) => {
      const h = extra.requestInfo?.headers ?? {};
      const who = {
        sub: h['x-latchkey-subject'] ?? null,
        scope: h['x-latchkey-scope'] ?? null,
        client_id: h['x-latchkey-client-id'] ?? null,
        // The gate never forwards the token unless told to (--pass-token).
        saw_authorization: h.authorization !== undefined,
      };
      return { content: [{ type: 'text', text: JSON.stringify(who) }] };
    },
  );
  return server;
}

const sessions = new Map();

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const http = createServer(async (req, res) => {
  try {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    const id = req.headers['mcp-session-id'];
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    let transport = id ? sessions.get(id) : undefined;
    if (!transport) {
      if (id || req.method !== 'POST' || !isInitializeRequest(body)) {
        // An unknown session (404 per the transport specification), or no session and no initialize.
        res.writeHead(id ? 404 : 400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'no valid session' }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await mcpServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    console.error('upstream error', e);
    if (!res.headersSent) res.writeHead(500).end();
  }
});

http.listen(port, host, () => {
  const a = http.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
