/* giftd-client.mjs: giftd-client.js as an ES module (import GiftdClient from '…/giftd-client.mjs'),
 * for Node and for <script type="module">. The classic script defines globalThis.GiftdClient. */
import './giftd-client.js';

const GiftdClient = globalThis.GiftdClient;
export {GiftdClient};
export default GiftdClient;
