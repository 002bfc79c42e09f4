import assert from 'node:assert/strict';
import { inRequestOrder } from '../../server/bulk-order.js';

describe('server/bulk-order', () => {
  it('puts _bulk_docs rows back in request order by id, refusals and conflicts included', () => {
    const docs = ['n3', 'n4', 'n1', 'n5', 'n6', 'n7'].map((_id) => ({ _id }));
    // As the security plugin's wrapper can leave them: refusals first, the rest in the order their checks ended.
    const rows = [
      { id: 'n3', error: 'forbidden' },
      { id: 'n6', error: 'forbidden' },
      { id: 'n1', error: 'conflict' },
      { id: 'n5', rev: '1-a' },
      { id: 'n4', rev: '1-b' },
      { id: 'n7', rev: '1-c' },
    ];
    assert.deepEqual(
      inRequestOrder(docs, rows).map((r) => r.id),
      ['n3', 'n4', 'n1', 'n5', 'n6', 'n7'],
    );
  });

  it('the same id twice keeps its rows in their order; a document without id takes a row no id matched', () => {
    const docs = [{ _id: 'a' }, {}, { _id: 'a' }];
    const rows = [
      { id: 'a', rev: '1-x' },
      { id: 'a', error: 'conflict' },
      { id: 'generated', rev: '1-y' },
    ];
    assert.deepEqual(inRequestOrder(docs, rows), [rows[0], rows[2], rows[1]]);
  });

  it('an answer of another length (new_edits=false: refusals only) is left as it is', () => {
    const rows = [{ id: 'b', error: 'forbidden' }];
    assert.deepEqual(inRequestOrder([{ _id: 'a' }, { _id: 'b' }], rows), rows);
  });
});
