<?php
// A no-op pecl gearman worker (php-gearman): the runtime GearmanManager's workers use.
//   php php_worker.php HOST PORT FUNCTION
// Answers every job with an empty result in the plain GearmanWorker::work() loop.
if ($argc != 4) {
    fwrite(STDERR, "usage: php php_worker.php HOST PORT FUNCTION\n");
    exit(2);
}
$worker = new GearmanWorker();
$worker->addServer($argv[1], (int)$argv[2]);
$worker->addFunction($argv[3], function ($job) { return ""; });
while (true) {
    if (!$worker->work() && $worker->returnCode() != GEARMAN_SUCCESS) {
        fwrite(STDERR, "php_worker: " . $worker->error() . "\n");
        usleep(10000);
    }
}
