<?php
// Entry point of the PHP conformance suite (run by conformance/php_test.go):
//
//     WARREN_URL=amqp://guest:guest@127.0.0.1:5672/%2F php run.php amqplib|ext [name-regexp]
//
// "amqplib" runs the amqplib_*.php tests with php-amqplib (Debian php-amqplib, loaded from the
// include path as PhpAmqpLib/autoload.php); "ext" runs the ext_*.php tests with the php-amqp
// extension (Debian php-amqp, on rabbitmq-c). The exit code is 0 only when every selected test
// passed; 3 means the client library is missing.

declare(strict_types=1);

error_reporting(E_ALL & ~E_DEPRECATED);
ini_set('display_errors', 'stderr');

require __DIR__ . '/support.php';

$suite = $argv[1] ?? '';
$filter = $argv[2] ?? '';
switch ($suite) {
    case 'amqplib':
        if (!@include_once 'PhpAmqpLib/autoload.php') {
            fwrite(STDERR, "php-amqplib is not installed (PhpAmqpLib/autoload.php not on the include path)\n");
            exit(3);
        }
        break;
    case 'ext':
        if (!extension_loaded('amqp')) {
            fwrite(STDERR, "the amqp extension is not loaded (install php-amqp)\n");
            exit(3);
        }
        break;
    default:
        fwrite(STDERR, "usage: php run.php amqplib|ext [name-regexp]\n");
        exit(2);
}

$files = glob(__DIR__ . "/{$suite}_*.php");
sort($files);
foreach ($files as $f) {
    require $f;
}
exit(runTests($suite, $filter));
