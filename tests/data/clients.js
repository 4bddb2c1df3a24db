// Every public method of three Node clients, against `cio-anon serve` (tests/test_clients.py).
const { TrackClient } = require('customerio-node');
const { Analytics: CdpAnalytics } = require('@customerio/cdp-analytics-node');
const { Analytics: SegmentAnalytics } = require('@segment/analytics-node');
const [url, site, key, write] = process.argv.slice(2);
(async () => {
  const cio = new TrackClient(site, key, { url: `${url}/api/v1` });
  const done = [];
  const step = async (name, call) => { await call(); done.push(name); };
  await step('identify', () => cio.identify('n-1', { email: 'n1@example.com' }));
  await step('track', () => cio.track('n-1', { name: 'Opened', data: { a: 1 } }));
  await step('trackAnonymous', () => cio.trackAnonymous('anon-n', { name: 'Viewed' }));
  await step('trackPageView', () => cio.trackPageView('n-1', '/pricing'));
  await step('addDevice', () => cio.addDevice('n-1', 'tok-n', 'android', { last_used: 1777626000 }));
  await step('deleteDevice', () => cio.deleteDevice('n-1', 'tok-n'));
  await step('addDevice again', () => cio.addDevice('n-1', 'tok-n2', 'ios'));
  await step('trackPush', () => cio.trackPush({ delivery_id: 'd1', event: 'opened', device_id: 'tok-n2', timestamp: 1777626000 }));
  await step('reportMetric', () => cio.reportMetric({ delivery_id: 'd2', metric: 'clicked' }));
  await step('submitForm', () => cio.submitForm('signup', { email: 'n1@example.com' }));
  await step('addCustomersToSegment', () => cio.addCustomersToSegment(3, ['n-1']));
  await step('removeCustomersFromSegment', () => cio.removeCustomersFromSegment(3, ['n-1']));
  await step('entity', () => cio.entity({ type: 'object', action: 'identify', identifiers: { object_type_id: '1', object_id: 'initech' }, attributes: { name: 'Initech' }, cio_relationships: [{ identifiers: { id: 'n-1' } }] }));
  await step('batch', () => cio.batch([{ type: 'person', action: 'event', identifiers: { id: 'n-1' }, name: 'Batched' }]));
  await step('getAccountRegion', () => cio.getAccountRegion());
  await step('identify m-1', () => cio.identify('m-1', { email: 'm1@example.com' }));
  await step('mergeCustomers', () => cio.mergeCustomers('id', 'n-1', 'id', 'm-1'));
  await step('suppress', () => cio.suppress('m-2'));
  await step('unsuppress', () => cio.unsuppress('m-2'));
  await step('unsubscribe', () => cio.unsubscribe('d1'));
  await step('identify gone', () => cio.identify('gone', {}));
  await step('destroy', () => cio.destroy('gone'));
  for (const [label, Analytics] of [['cdp', CdpAnalytics], ['segment', SegmentAnalytics]]) {
    const analytics = new Analytics({ writeKey: write, host: url, maxEventsInBatch: 1 });
    const errors = [];
    analytics.on('error', (error) => errors.push(String(error && error.reason || error)));
    const user = `${label}-1`;
    analytics.identify({ userId: user, traits: { email: `${user}@example.com` } });
    analytics.track({ userId: user, event: 'Order Completed', properties: { total: 3 } });
    analytics.page({ userId: user, name: 'Home', properties: { url: 'https://x.io/' } });
    analytics.screen({ userId: user, name: 'Settings' });
    analytics.group({ userId: user, groupId: `${label}-org`, traits: { name: 'Org' } });
    analytics.alias({ previousId: `${label}-anon`, userId: user });
    await analytics.closeAndFlush();
    if (errors.length) throw new Error(`${label}: ${errors.join('; ')}`);
    done.push(label);
  }
  console.log(JSON.stringify(done));
})().catch((error) => { console.error(String(error && error.stack || error)); process.exit(1); });
