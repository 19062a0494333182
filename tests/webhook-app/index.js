// A control app as jambonz users write them: express + @jambonz/node-client.
// Every hook must carry a valid Jambonz-Signature (checked by the client library's own
// WebhookResponse.verifyJambonzSignature); a bad or missing one is answered 403.
// Usage: WEBHOOK_SECRET=... node index.js   (prints "listening <port>" once ready; PORT=0 default)
// With DIAL_SIP_URI set (the end-to-end tests of `dialplane serve`), the call webhook dials that
// URI alone instead of the example targets.
'use strict';
const express = require('express');
const { WebhookResponse } = require('@jambonz/node-client');

const secret = process.env.WEBHOOK_SECRET;
const dialUri = process.env.DIAL_SIP_URI;
if (!secret) {
  console.error('WEBHOOK_SECRET is required');
  process.exit(2);
}

const app = express();
app.use(express.json());
app.use(WebhookResponse.verifyJambonzSignature(secret));

// The call webhook: answers with verbs built (and validated) by the Node client.
app.post('/call', (req, res) => {
  const app = new WebhookResponse();
  app.addVerb('dial', {
    actionHook: '/action',
    callerId: req.body.from,
    answerOnBridge: true,
    timeout: 20,
    headers: { 'X-Call-Sid': req.body.call_sid },
    target: dialUri ? [{ type: 'sip', sipUri: dialUri }] : [
      { type: 'phone', number: '+15083084809', trunk: 'Twilio' },
      { type: 'sip', sipUri: 'sip:1617333456@sip.trunk1.com', auth: { username: 'foo', password: 'bar' } },
      { type: 'user', name: 'spike@sip.example.com' },
      { type: 'teams', number: '+15551234567', tenant: 'contoso.com', vmail: true },
    ],
  });
  res.status(200).json(app);
});

// The dial actionHook: echoes what it understood of the dial result, then hangs up.
app.post('/action', (req, res) => {
  const { dial_call_sid, dial_status, dial_call_status, dial_sip_status } = req.body;
  const app = new WebhookResponse();
  app.addVerb('hangup', { headers: { 'X-Dial-Status': `${dial_status}/${dial_call_status}/${dial_sip_status}/${dial_call_sid}` } });
  res.status(200).json(app);
});

// Notifications: nothing to answer.
app.post('/status', (req, res) => res.sendStatus(204));

app.use((err, req, res, next) => {
  res.status(403).type('text').send(`rejected: ${err.message}`);
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
