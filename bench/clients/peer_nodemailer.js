'use strict';
// bench-nodemailer: the peer client over nodemailer's SMTPConnection with
// lmtp: true (installed into bench/node_modules by bench/run.sh). It pipelines
// MAIL, RCPT and DATA when offered, sends the message by DATA (no BDAT), and
// reads one reply per accepted recipient by itself: info.accepted and
// info.rejected come back per recipient, nothing needed adding. --stream gives
// it a file stream; --batch is unsupported. Arguments and output: args.h.
const fs = require('fs');
const SMTPConnection = require('nodemailer/lib/smtp-connection')  // bench/node_modules;

function parseArgs(argv) {
    const a = { host: '127.0.0.1', messages: 1, from: 'bench@example.org', to: [] };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        if (k === '--reconnect' || k === '--stream' || k === '--batch') {
            a[k.slice(2)] = true;
            continue;
        }
        const v = argv[++i];
        if (v === undefined) throw new Error(k + ' needs a value');
        if (k === '--host') a.host = v;
        else if (k === '--port') a.port = Number(v);
        else if (k === '--messages') a.messages = Number(v);
        else if (k === '--from') a.from = v;
        else if (k === '--body') a.body = v;
        else if (k === '--to') a.to.push(v);
        else throw new Error('unknown argument ' + k);
    }
    if (!a.port || !a.body || !a.to.length) {
        throw new Error('usage: --host H --port P --messages N --to ADDR... --body FILE [--reconnect] [--stream]');
    }
    return a;
}

function connect(a) {
    return new Promise((resolve, reject) => {
        const conn = new SMTPConnection({ host: a.host, port: a.port, lmtp: true, name: 'bench.example.org',
                                          socketTimeout: 60000 });
        conn.once('error', reject);
        conn.connect(() => {
            conn.removeListener('error', reject);
            conn.on('error', err => process.stderr.write('bench-nodemailer: ' + err.message + '\n'));
            resolve(conn);
        });
    });
}

function send(conn, envelope, message) {
    return new Promise(resolve => {
        conn.send(envelope, message, (err, info) => resolve({ err, info }));
    });
}

function quit(conn) {
    return new Promise(resolve => {
        conn.once('end', resolve);
        conn.quit();
    });
}

async function main() {
    const a = parseArgs(process.argv.slice(2));
    if (a.batch) {
        process.stdout.write('UNSUPPORTED nodemailer has no batch call\n');
        process.exit(3);
    }
    const data = a.stream ? null : fs.readFileSync(a.body);
    const envelope = () => ({ from: a.from, to: a.to.slice() });
    try { fs.writeFileSync('/proc/self/clear_refs', '5'); } catch (e) { /* the peak then counts from the start */ }
    process.stdout.write('READY\n');
    await new Promise(resolve => process.stdin.once('data', resolve));
    process.stdin.pause();
    const start = Date.now() / 1000;
    let ok = 0, failed = 0, errors = 0, sent = 0;
    let conn = null;
    while (sent < a.messages) {
        sent++;
        try {
            if (!conn) conn = await connect(a);
        } catch (err) {
            process.stderr.write('bench-nodemailer: connect: ' + err.message + '\n');
            errors++;
            failed += a.to.length;
            continue;
        }
        const { err, info } = await send(conn, envelope(), a.stream ? fs.createReadStream(a.body) : data);
        if (err) {
            // every recipient refused, or the session broke
            failed += a.to.length;
            if (err.code !== 'EENVELOPE') {
                errors++;
                conn.close();
                conn = null;
            }
            continue;
        }
        ok += info.accepted.length;
        failed += a.to.length - info.accepted.length;
        if (a.reconnect) {
            await quit(conn);
            conn = null;
        }
    }
    if (conn) await quit(conn);
    const end = Date.now() / 1000;
    process.stdout.write(`RESULT start=${start.toFixed(6)} end=${end.toFixed(6)} messages=${sent} rcpt_ok=${ok} ` +
                         `rcpt_failed=${failed} errors=${errors}\n`);
}

main().catch(err => {
    process.stderr.write('bench-nodemailer: ' + (err && err.stack || err) + '\n');
    process.exit(1);
});
