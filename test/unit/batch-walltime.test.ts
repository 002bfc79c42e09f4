import assert from 'node:assert/strict';
import { documentsPerJob, parseSgeTime, parseSlurmTime, parseWalltime, walltimeInOptions, walltimeOptions } from '../../config/batch-walltime.js';

describe('batch walltime: the forms each scheduler reads, and how many documents fit a job', () => {
  it("reads Slurm's --time forms (sbatch(1)) and refuses the rest", () => {
    const cases: Array<[string, number | undefined]> = [
      ['90', 5400],
      ['90:30', 5430],
      ['02:00:00', 7200],
      ['1-12', 129_600],
      ['1-12:30', 131_400],
      ['1-00:00:01', 86_401],
      ['INFINITE', undefined],
      ['0', undefined],
      ['2h', undefined],
    ];
    for (const [text, seconds] of cases) assert.equal(parseSlurmTime(text), seconds, text);
  });

  it("reads Grid Engine's time values (sge_types(1)): seconds or [[h:]m:]s", () => {
    const cases: Array<[string, number | undefined]> = [
      ['7200', 7200],
      ['2:00:00', 7200],
      ['30:00', 1800],
      ['1:2:3:4', undefined],
      ['1-00:00:00', undefined],
      ['', undefined],
    ];
    for (const [text, seconds] of cases) assert.equal(parseSgeTime(text), seconds, text);
  });

  it('batch.walltime: a duration, seconds as a number, or the clock form both read alike; never a bare number in a string', () => {
    assert.equal(parseWalltime('2h'), 7200);
    assert.equal(parseWalltime('1h30m'), 5400);
    assert.equal(parseWalltime(600), 600);
    assert.equal(parseWalltime('02:00:00'), 7200);
    assert.equal(parseWalltime('1-00:00:00'), 86_400);
    assert.equal(parseWalltime('7200'), undefined, 'minutes to Slurm, seconds to Grid Engine: refused');
    assert.equal(parseWalltime(-5), undefined);
    assert.equal(parseWalltime('2 hours'), undefined);
  });

  it('finds the walltime in the options the site already passes', () => {
    assert.deepEqual(walltimeInOptions('slurm', ['--partition=x', '--time=01:00:00']), { seconds: 3600, option: '--time=01:00:00' });
    assert.deepEqual(walltimeInOptions('slurm', ['-t', '30']), { seconds: 1800, option: '-t 30' });
    assert.deepEqual(walltimeInOptions('slurm', ['-t45']), { seconds: 2700, option: '-t45' });
    assert.deepEqual(walltimeInOptions('slurm', ['--time', 'soon']), { seconds: undefined, option: '--time soon' });
    assert.equal(walltimeInOptions('slurm', ['-l', 'h_rt=60']), undefined, 'an SGE option means nothing to Slurm');
    assert.deepEqual(walltimeInOptions('sge', ['-P', 'P_edelweis', '-l', 'sps=1,h_rt=02:00:00']), { seconds: 7200, option: '-l sps=1,h_rt=02:00:00' });
    assert.equal(walltimeInOptions('sge', ['-l', 's_rt=60']), undefined);
  });

  it('asks each scheduler for a walltime in its own words, and reads back what it wrote', () => {
    assert.deepEqual(walltimeOptions('slurm', 100), ['--time=0:01:40']);
    assert.deepEqual(walltimeOptions('sge', 100), ['-l', 'h_rt=100']);
    for (const seconds of [59, 3600, 7261, 90_000])
      for (const system of ['slurm', 'sge'] as const)
        assert.equal(walltimeInOptions(system, walltimeOptions(system, seconds))?.seconds, seconds, `${system} ${seconds}`);
  });

  it('packs a job with as many documents as fit by timeout_s, at least one, never more than docs_per_job', () => {
    assert.deepEqual(documentsPerJob(100, 7200, 1200), { count: 6, lowered: true });
    assert.deepEqual(documentsPerJob(100, 7200, 7200), { count: 1, lowered: true });
    assert.deepEqual(documentsPerJob(100, 3600, 7200), { count: 1, lowered: true }, 'a step longer than the walltime still gets its one document');
    assert.deepEqual(documentsPerJob(5, 7200, 60), { count: 5, lowered: false });
    assert.deepEqual(documentsPerJob(5, undefined, 60), { count: 5, lowered: false });
  });
});
