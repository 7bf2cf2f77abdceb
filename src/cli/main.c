/* ddb2os: the daemon and its operator commands. Everything but this function is in libd2o. */
#include "d2o/cli.h"

int main(int argc, char **argv)
{
    return d2o_cli_main(argc, argv);
}
