// A user's app in Node: checks X-CloudChat-Signature with node's crypto (timingSafeEqual),
// and records each request as one JSON line on stdout. Usage: WEBHOOK_SECRET=… node
// verify_receiver.js PORT
const crypto = require("crypto");
const http = require("http");

const secret = process.env.WEBHOOK_SECRET;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const expected = crypto.createHmac("sha256", secret).update(body).digest();
    const given = Buffer.from(req.headers["x-cloudchat-signature"] || "", "hex");
    const valid = given.length === expected.length && crypto.timingSafeEqual(given, expected);
    const id = valid ? JSON.parse(body.toString("utf8")).id : null;
    const sha256 = crypto.createHash("sha256").update(body).digest("hex");
    console.log(JSON.stringify({ id, valid, status: valid ? 200 : 401, sha256 }));
    res.writeHead(valid ? 200 : 401, { "Content-Length": "2" });
    res.end("ok");
  });
});
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/hook`);
});
